import { createHash, sign, verify, type KeyObject } from 'node:crypto';
import { docNameProblem } from '../config/names.js';
import { type DocName, type FeedId, type NodeId, B64U_32 } from '../types.js';
import { ALG, Typ } from '../tokens/typ.js';
import type { ClientRanges, UpdateLimits } from '../yjs/parse.js';

/**
 * Origin-signed envelopes (DESIGN.md §4): a compact JWS whose claims name the
 * update (`h`, its SHA-256) and the exact struct ranges it carries; the
 * update bytes travel beside it. Signed and verified with node:crypto on this
 * hot path; the header is fixed, so a token is refused unless its header is
 * byte for byte `{"alg":"EdDSA","typ":"tessera-envelope+jwt"}`.
 */

export interface EnvelopeClaims {
  readonly iss: NodeId;
  readonly doc: DocName;
  readonly feed: FeedId;
  readonly seq: number;
  /** base64url SHA-256 of the update bytes. */
  readonly h: string;
  readonly clients: ClientRanges;
  readonly iat: number;
}

export const ENVELOPE_HEADER = Buffer.from(JSON.stringify({ alg: ALG, typ: Typ.envelope })).toString('base64url');
export const MAX_ENVELOPE_TOKEN_BYTES = 64 * 1024;
/**
 * What one envelope's update may carry (PROTOCOL.md §6.7.1), so that reading
 * and applying any one envelope is a bounded piece of work: 8 MiB of
 * two-byte structs took seconds and gigabytes, and thousands of items at one
 * insertion point seconds more. A signer splits a larger or more crowded
 * change into several envelopes.
 */
export const ENVELOPE_LIMITS: UpdateLimits = { structs: 65_536, deleteRanges: 65_536, crowd: 64 };
const FEED = /^[A-Za-z0-9_-]{1,64}$/;
const CLAIM_KEYS = 'clients,doc,feed,h,iat,iss,seq';

export class EnvelopeError extends Error {
  /** forgery: bad signature, hash, claims or bytes; it counts against the sender. */
  readonly forgery: boolean;
  constructor(message: string, forgery = true) {
    super(message);
    this.forgery = forgery;
  }
}

export function updateHash(update: Uint8Array): string {
  return createHash('sha256').update(update).digest('base64url');
}

/**
 * Whether a stored update is still the one its token names (its `h`): damage
 * on disk that leaves the record decodable shows here, instead of as a
 * forgery at every peer it is sent to, or as other content in the document.
 */
export function updateMatchesToken(token: string, update: Uint8Array): boolean {
  try {
    return readEnvelopeClaims(token).h === updateHash(update);
  } catch {
    return false;
  }
}

export function signEnvelope(claims: EnvelopeClaims, privateKey: KeyObject): string {
  const payload = Buffer.from(
    JSON.stringify({ iss: claims.iss, doc: claims.doc, feed: claims.feed, seq: claims.seq, h: claims.h, clients: claims.clients, iat: claims.iat }),
  ).toString('base64url');
  const input = `${ENVELOPE_HEADER}.${payload}`;
  return `${input}.${sign(null, Buffer.from(input), privateKey).toString('base64url')}`;
}

/** Decodes and checks the shape of an envelope's claims without verifying the signature. */
export function readEnvelopeClaims(token: string): EnvelopeClaims {
  if (token.length > MAX_ENVELOPE_TOKEN_BYTES) throw new EnvelopeError('envelope token too large');
  const parts = token.split('.');
  if (parts.length !== 3 || parts[0] !== ENVELOPE_HEADER) throw new EnvelopeError('not an envelope token (header must be EdDSA, tessera-envelope+jwt)');
  // Canonical base64url only, as every signer writes it: Buffer alone would skip characters outside the alphabet, which a JOSE verifier refuses.
  const payload = Buffer.from(parts[1]!, 'base64url');
  if (payload.toString('base64url') !== parts[1]) throw new EnvelopeError('envelope claims are not canonical base64url');
  let c: Record<string, unknown>;
  try {
    c = JSON.parse(payload.toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new EnvelopeError('envelope claims are not JSON');
  }
  if (typeof c !== 'object' || c === null || Object.keys(c).sort().join(',') !== CLAIM_KEYS) throw new EnvelopeError('envelope claims must be exactly iss, doc, feed, seq, h, clients, iat');
  if (typeof c.iss !== 'string' || !B64U_32.test(c.iss)) throw new EnvelopeError('iss must be a node id');
  if (typeof c.doc !== 'string' || docNameProblem(c.doc)) throw new EnvelopeError('doc must be a valid document name');
  if (typeof c.feed !== 'string' || !FEED.test(c.feed)) throw new EnvelopeError('feed must be base64url');
  if (!Number.isSafeInteger(c.seq) || (c.seq as number) < 1) throw new EnvelopeError('seq must be a positive integer');
  if (typeof c.h !== 'string' || !B64U_32.test(c.h)) throw new EnvelopeError('h must be a base64url SHA-256');
  if (!Number.isSafeInteger(c.iat)) throw new EnvelopeError('iat must be an integer');
  if (!validRanges(c.clients)) throw new EnvelopeError('clients must be sorted, maximal [clientId, from, to) ranges');
  return c as unknown as EnvelopeClaims;
}

function validRanges(v: unknown): v is ClientRanges {
  if (!Array.isArray(v) || v.length > 100_000) return false;
  let prev: number[] | undefined;
  for (const r of v) {
    if (!Array.isArray(r) || r.length !== 3 || !r.every((n) => Number.isSafeInteger(n) && n >= 0)) return false;
    if (r[1] >= r[2]) return false;
    if (prev && (r[0] < prev[0]! || (r[0] === prev[0] && r[1] <= prev[2]!))) return false;
    prev = r;
  }
  return true;
}

/** Verifies the signature with the origin's key and the hash of the update bytes. */
export function verifyEnvelope(token: string, update: Uint8Array, originKey: KeyObject): EnvelopeClaims {
  const claims = readEnvelopeClaims(token);
  const verdict = signatureVerdict({ ...signatureParts(token), key: originKey, update, h: claims.h });
  if (verdict !== 'ok') throw new EnvelopeError(verdict === 'hash' ? BAD_HASH : BAD_SIGNATURE);
  return claims;
}

/** One envelope's signature check: its JWS signing input and signature, the origin's key, and the hash its claims state. */
export interface SignatureJob {
  readonly input: Buffer;
  readonly sig: Buffer;
  readonly key: KeyObject;
  readonly update: Uint8Array;
  readonly h: string;
}

/** 'ok' when the signature verifies and the hash matches; else why not. */
export type Verdict = 'ok' | 'signature' | 'hash';

export function signatureVerdict(j: SignatureJob): Verdict {
  if (!verify(null, j.input, j.key, j.sig)) return 'signature';
  return updateHash(j.update) === j.h ? 'ok' : 'hash';
}

export const BAD_SIGNATURE = 'signature does not verify with the origin key';
export const BAD_HASH = 'h does not match the update bytes';

/** The JWS signing input and the signature of a token, which must be 64 bytes of canonical base64url. */
export function signatureParts(token: string): { input: Buffer; sig: Buffer } {
  const dot = token.lastIndexOf('.');
  const sig = Buffer.from(token.slice(dot + 1), 'base64url');
  if (sig.length !== 64 || sig.toString('base64url') !== token.slice(dot + 1)) throw new EnvelopeError('signature is not 64 bytes of canonical base64url');
  return { input: Buffer.from(token.slice(0, dot)), sig };
}
