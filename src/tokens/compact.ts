import { ALG, MAX_TOKEN_BYTES } from './typ.js';

const B64U = /^[A-Za-z0-9_-]+$/;
/** An Ed25519 signature: 64 bytes, 86 characters of base64url. */
const SIGNATURE_CHARS = 86;

/** One part of a compact JWS in its only spelling: base64url, no padding or whitespace, no stray bits in its last character. */
function canonicalPart(part: string): boolean {
  return B64U.test(part) && Buffer.from(part, 'base64url').toString('base64url') === part;
}

/**
 * Why `token` is not a compact JWS of kind `typ` in its one canonical
 * spelling, or undefined: at most MAX_TOKEN_BYTES, three canonical base64url
 * parts, a 64-byte signature, and a protected header whose `alg` is EdDSA
 * and whose `typ` is exactly `typ` (jose compares `typ` case-insensitively,
 * with or without `application/`).
 *
 * jose on Node 20 decodes the signature leniently (through `atob`: padding
 * and whitespace skipped, stray bits ignored), so without this check one
 * signature can be spelt in any number of ways, all of which verify: a
 * relay could then turn one genuine grant or revocation into as many
 * distinct tokens as it likes, and every pool or store keyed by the token
 * string would hold each of them.
 */
export function compactProblem(token: string, typ: string): string | undefined {
  if (token.length > MAX_TOKEN_BYTES) return 'token too large';
  const parts = token.split('.');
  if (parts.length !== 3 || !parts.every(canonicalPart)) return 'not a compact JWS in canonical base64url';
  if (parts[2]!.length !== SIGNATURE_CHARS) return 'not an Ed25519 signature';
  let header: unknown;
  try {
    header = JSON.parse(Buffer.from(parts[0]!, 'base64url').toString('utf8'));
  } catch {
    return 'protected header is not JSON';
  }
  const h = header as { alg?: unknown; typ?: unknown } | null;
  if (typeof h !== 'object' || h === null || Array.isArray(h)) return 'protected header is not a JSON object';
  if (h.alg !== ALG) return `alg must be ${ALG}`;
  if (h.typ !== typ) return `typ must be ${typ}`;
  return undefined;
}
