/**
 * Grant- and revocation-shaped tokens that nobody signed, well formed enough
 * to pass every check short of the signature (typ, node-id-shaped `iss` and
 * `sub`, a valid cutoff, an 86-character signature): what any peer can put in
 * a `grants` message, and what a node cannot tell from a genuine token of an
 * authority it does not trust.
 */
import { randomBytes } from 'node:crypto';

export const b64 = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');
const signature = (): string => randomBytes(64).toString('base64url');

/** A random, well-formed node id (43 chars of base64url). */
export const randomId = (): string => randomBytes(32).toString('base64url');

/** An unsigned revocation of a random node (or `sub`), claiming `iss` (a random authority by default). */
export function junkRevocation(o: { iss?: string; sub?: string } = {}): string {
  const claims = { iss: o.iss ?? randomId(), sub: o.sub ?? randomId(), iat: 1, jti: randomBytes(12).toString('base64url'), at: '2020-01-01T00:00:00.000Z', cutoff: { '*': {} } };
  return `${b64({ alg: 'EdDSA', typ: 'tessera-revocation+jwt' })}.${b64(claims)}.${signature()}`;
}

/** An unsigned grant for `sub`, claiming `iss` (a random authority by default), with a far expiry unless told. */
export function junkGrant(sub: string, o: { iss?: string; exp?: number } = {}): string {
  const claims = { iss: o.iss ?? randomId(), sub, iat: 1, exp: o.exp ?? 9_999_999_999, jti: randomBytes(12).toString('base64url'), cnf: { jwk: { kty: 'OKP', crv: 'Ed25519', x: randomId() } }, read: ['**'], write: ['**'] };
  return `${b64({ alg: 'EdDSA', typ: 'tessera-grant+jwt' })}.${b64(claims)}.${signature()}`;
}

/**
 * A string that `decodeJwt` accepts (three parts, a JSON object payload) but
 * that nobody signed.
 */
export function junkJwt(typ: string, claims: Record<string, unknown>): string {
  return `${b64({ alg: 'EdDSA', typ })}.${b64(claims)}.${randomBytes(8).toString('base64url')}`;
}
