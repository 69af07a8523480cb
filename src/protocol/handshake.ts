import { createHash, createPublicKey, diffieHellman, hkdfSync, type KeyObject } from 'node:crypto';
import { SignJWT, decodeProtectedHeader, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';
import { thumbprint, importPublicJwk } from '../identity/keys.js';
import { type NodeId, type PublicJwk, B64U_32 } from '../types.js';
import { ALG, Typ } from '../tokens/typ.js';
import { Close, PeerRefusal } from './close-codes.js';

/**
 * The mutual handshake of PROTOCOL.md §2, as pure functions: no sockets, and
 * every random input (ephemeral keys, nonces, jti, time) is a parameter, so
 * the test vectors can be recomputed exactly.
 */

export const SUBPROTOCOL = 'tessera.v1';
export const HANDSHAKE_TOKEN_TTL_S = 60;
export const MAX_HELLO_BYTES = 1024;
export const MAX_HANDSHAKE_TOKEN_BYTES = 4096;
const INFO_D2L = 'tessera.v1 dialler->listener';
const INFO_L2D = 'tessera.v1 listener->dialler';

export interface Hello {
  readonly from: NodeId;
  readonly to: NodeId;
  /** The dialler's ephemeral X25519 public key, base64url. */
  readonly epk: string;
  /** 32 random bytes, base64url. */
  readonly nonce: string;
}

const enc = new TextEncoder();

export function encodeHello(h: Hello): Uint8Array {
  return enc.encode(JSON.stringify({ type: 'hello', v: 1, from: h.from, to: h.to, epk: h.epk, nonce: h.nonce }));
}

/** Parses message 1; anything but the exact shape is a handshake_invalid refusal. */
export function parseHello(bytes: Uint8Array): Hello {
  if (bytes.byteLength > MAX_HELLO_BYTES) throw new PeerRefusal(Close.handshakeInvalid, 'hello too large');
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    throw new PeerRefusal(Close.handshakeInvalid, 'hello is not JSON');
  }
  const o = v as Record<string, unknown>;
  const keys = typeof v === 'object' && v !== null && !Array.isArray(v) ? Object.keys(o).sort().join(',') : '';
  if (keys !== 'epk,from,nonce,to,type,v' || o.type !== 'hello') throw new PeerRefusal(Close.handshakeInvalid, 'not a hello message');
  if (o.v !== 1) throw new PeerRefusal(Close.handshakeInvalid, `unsupported version ${JSON.stringify(o.v)}`);
  for (const k of ['from', 'to', 'epk', 'nonce'] as const) {
    if (typeof o[k] !== 'string' || !B64U_32.test(o[k])) throw new PeerRefusal(Close.handshakeInvalid, `hello.${k} must be 32 bytes base64url`);
  }
  return { from: o.from as NodeId, to: o.to as NodeId, epk: o.epk as string, nonce: o.nonce as string };
}

/** Running transcript hash: th1 = H(m1), th2 = H(th1 || m2), th3 = H(th2 || m3). */
export function transcript(prev: Uint8Array | undefined, message: Uint8Array): Uint8Array {
  const h = createHash('sha256');
  if (prev) h.update(prev);
  return new Uint8Array(h.update(message).digest());
}

export const b64u = (b: Uint8Array): string => Buffer.from(b).toString('base64url');

interface TokenInput {
  readonly signer: { id: NodeId; privateKey: KeyObject };
  readonly audience: NodeId;
  readonly iat: number;
  readonly jti: string;
  readonly sessionTtlS: number;
}

/** Message 2: the listener's token, binding the dialler's nonce and the transcript so far. */
export function signListenerToken(input: TokenInput & { readonly dialerNonce: string; readonly epk: string; readonly nonce: string; readonly th1: Uint8Array }): Promise<string> {
  return new SignJWT({ nonce: input.dialerNonce, epk: input.epk, snonce: input.nonce, th: b64u(input.th1), sttl: input.sessionTtlS })
    .setProtectedHeader({ alg: ALG, typ: Typ.handshakeListener })
    .setIssuer(input.signer.id)
    .setAudience(input.audience)
    .setIssuedAt(input.iat)
    .setExpirationTime(input.iat + HANDSHAKE_TOKEN_TTL_S)
    .setJti(input.jti)
    .sign(input.signer.privateKey);
}

/** Message 3: the dialler's token with its public key in the header. */
export function signDiallerToken(input: TokenInput & { readonly publicJwk: PublicJwk; readonly listenerNonce: string; readonly th2: Uint8Array }): Promise<string> {
  return new SignJWT({ nonce: input.listenerNonce, th: b64u(input.th2), sttl: input.sessionTtlS })
    .setProtectedHeader({ alg: ALG, typ: Typ.handshakeDialler, jwk: { kty: 'OKP', crv: 'Ed25519', x: input.publicJwk.x } })
    .setIssuer(input.signer.id)
    .setAudience(input.audience)
    .setIssuedAt(input.iat)
    .setExpirationTime(input.iat + HANDSHAKE_TOKEN_TTL_S)
    .setJti(input.jti)
    .sign(input.signer.privateKey);
}

export interface VerifyContext {
  readonly self: NodeId;
  readonly now: number;
  readonly clockToleranceS: number;
}

export interface VerifiedHandshakeToken {
  readonly payload: JWTPayload & { nonce: string; th: string; sttl: number; epk?: string; snonce?: string };
}

/**
 * Verifies a handshake token with explicit allow-lists: EdDSA only, the
 * message's own typ, issuer, audience (a single string equal to this node),
 * required claims, maximum age, clock tolerance, and the expected nonce and
 * transcript. Every failure is a PeerRefusal carrying its close code.
 */
async function verifyHandshakeToken(
  token: string,
  key: KeyObject,
  ctx: VerifyContext & { typ: string; issuer: NodeId; nonce: string; th: Uint8Array; required: string[] },
): Promise<VerifiedHandshakeToken> {
  if (token.length > MAX_HANDSHAKE_TOKEN_BYTES) throw new PeerRefusal(Close.handshakeInvalid, 'handshake token too large');
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, key, {
      algorithms: [ALG],
      typ: ctx.typ,
      issuer: ctx.issuer,
      audience: ctx.self,
      requiredClaims: ['iss', 'aud', 'exp', 'iat', 'jti', 'nonce', 'th', 'sttl', ...ctx.required],
      maxTokenAge: HANDSHAKE_TOKEN_TTL_S,
      clockTolerance: ctx.clockToleranceS,
      currentDate: new Date(ctx.now),
    }));
  } catch (err) {
    throw refusalFor(err, token, ctx.now);
  }
  if (typeof payload.aud !== 'string') throw new PeerRefusal(Close.badToken, 'aud must be a single string');
  if (payload.nonce !== ctx.nonce) throw new PeerRefusal(Close.badToken, 'nonce does not match');
  if (payload.th !== b64u(ctx.th)) throw new PeerRefusal(Close.badToken, 'transcript hash does not match');
  if (typeof payload.jti !== 'string' || payload.jti.length > 64) throw new PeerRefusal(Close.badToken, 'jti must be a short string');
  if (typeof payload.sttl !== 'number' || !Number.isInteger(payload.sttl) || payload.sttl < 1) throw new PeerRefusal(Close.badToken, 'sttl must be a positive integer');
  if ((payload.exp as number) - (payload.iat as number) > HANDSHAKE_TOKEN_TTL_S) throw new PeerRefusal(Close.badToken, 'token lifetime too long');
  return { payload: payload as VerifiedHandshakeToken['payload'] };
}

/** Maps a jose failure to a refusal; clock failures name the skew. */
function refusalFor(err: unknown, token: string, now: number): PeerRefusal {
  const timing = err instanceof joseErrors.JWTExpired || (err instanceof joseErrors.JWTClaimValidationFailed && (err.claim === 'iat' || err.claim === 'nbf') && err.reason === 'check_failed');
  if (timing) {
    const iat = Number(err.payload.iat);
    const skew = Number.isFinite(iat) ? Math.round(iat - now / 1000) : NaN;
    const detail = Number.isNaN(skew) ? err.message : skew > 0 ? `peer clock ahead by ${skew}s` : `token too old or peer clock behind by ${-skew}s`;
    return new PeerRefusal(Close.clockSkew, detail);
  }
  if (err instanceof joseErrors.JWTClaimValidationFailed) return new PeerRefusal(Close.badToken, `claim ${err.claim}: ${err.reason}`);
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return new PeerRefusal(Close.badToken, 'algorithm not allowed');
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return new PeerRefusal(Close.badToken, 'signature invalid');
  if (err instanceof joseErrors.JOSEError) return new PeerRefusal(Close.badToken, `token invalid (${err.code})`);
  void token;
  return new PeerRefusal(Close.badToken, 'token invalid');
}

/** The dialler checks message 2 against the listener's pinned key. */
export function verifyListenerToken(token: string, listenerKey: KeyObject, ctx: VerifyContext & { listener: NodeId; dialerNonce: string; th1: Uint8Array }) {
  return verifyHandshakeToken(token, listenerKey, { ...ctx, typ: Typ.handshakeListener, issuer: ctx.listener, nonce: ctx.dialerNonce, th: ctx.th1, required: ['epk', 'snonce'] }).then((v) => {
    const { epk, snonce } = v.payload;
    if (typeof epk !== 'string' || !B64U_32.test(epk) || typeof snonce !== 'string' || !B64U_32.test(snonce)) {
      throw new PeerRefusal(Close.badToken, 'epk and snonce must be 32 bytes base64url');
    }
    return v;
  });
}

/** The public key a dialler put in message 3's header, checked to be a bare Ed25519 public JWK whose thumbprint is `iss`. */
export function diallerHeaderKey(token: string, dialler: NodeId): PublicJwk {
  if (token.length > MAX_HANDSHAKE_TOKEN_BYTES) throw new PeerRefusal(Close.handshakeInvalid, 'handshake token too large');
  let header;
  try {
    header = decodeProtectedHeader(token);
  } catch {
    throw new PeerRefusal(Close.handshakeInvalid, 'message 3 is not a compact JWS');
  }
  const jwk = header.jwk as Record<string, unknown> | undefined;
  if (!jwk || jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string' || !B64U_32.test(jwk.x) || 'd' in jwk) {
    throw new PeerRefusal(Close.badToken, 'header jwk must be an Ed25519 public key');
  }
  const key: PublicJwk = { kty: 'OKP', crv: 'Ed25519', x: jwk.x };
  if (thumbprint(key) !== dialler) throw new PeerRefusal(Close.keyMismatch, 'header jwk thumbprint is not the claimed id');
  return key;
}

/** The listener checks message 3 with the key the caller resolved (pinned, or a grant's cnf). */
export function verifyDiallerToken(token: string, key: PublicJwk, ctx: VerifyContext & { dialler: NodeId; listenerNonce: string; th2: Uint8Array }) {
  return verifyHandshakeToken(token, importPublicJwk(key), { ...ctx, typ: Typ.handshakeDialler, issuer: ctx.dialler, nonce: ctx.listenerNonce, th: ctx.th2, required: [] });
}

export interface SessionKeys {
  /** Key for frames the dialler sends. */
  readonly d2l: Uint8Array;
  /** Key for frames the listener sends. */
  readonly l2d: Uint8Array;
}

/**
 * HKDF-SHA256 over the X25519 shared secret, salted with th3, one key per
 * direction. An all-zero shared secret (a low-order point) is refused.
 */
export function deriveSessionKeys(ownPrivate: KeyObject, peerEpk: string, th3: Uint8Array): SessionKeys {
  let shared: Buffer;
  try {
    const peer = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: peerEpk }, format: 'jwk' });
    shared = diffieHellman({ privateKey: ownPrivate, publicKey: peer });
  } catch {
    throw new PeerRefusal(Close.badToken, 'ephemeral key rejected');
  }
  if (shared.every((b) => b === 0)) throw new PeerRefusal(Close.badToken, 'ephemeral key is a low-order point');
  return {
    d2l: new Uint8Array(hkdfSync('sha256', shared, th3, INFO_D2L, 32)),
    l2d: new Uint8Array(hkdfSync('sha256', shared, th3, INFO_L2D, 32)),
  };
}

/** The raw X25519 public key of an ephemeral key pair, base64url. */
export function x25519Public(publicKey: KeyObject): string {
  return String(publicKey.export({ format: 'jwk' }).x);
}
