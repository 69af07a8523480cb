import { randomBytes, type KeyObject } from 'node:crypto';
import { SignJWT, jwtVerify, decodeJwt, errors as joseErrors, type JWTPayload } from 'jose';
import { TokenError } from '../errors.js';
import type { KeyPair } from '../identity/keys.js';
import { thumbprint } from '../identity/keys.js';
import { globProblem } from '../config/glob.js';
import { type NodeId, type PublicJwk, B64U_32 } from '../types.js';
import { ALG, Typ } from './typ.js';
import { compactProblem } from './compact.js';

/** A verified grant: an authority says this node (this key) may read and write these documents until `exp`. */
export interface Grant {
  readonly token: string;
  readonly iss: NodeId;
  readonly sub: NodeId;
  readonly key: PublicJwk;
  readonly read: readonly string[];
  readonly write: readonly string[];
  readonly iat: number;
  readonly exp: number;
  readonly jti: string;
}


/** `tessera grant`: signs a grant for a node with an authority key. */
export function issueGrant(authority: KeyPair, node: { id: NodeId; publicKey: PublicJwk }, opts: { read: readonly string[]; write: readonly string[]; ttlMs: number; now?: number }): Promise<string> {
  const now = Math.floor((opts.now ?? Date.now()) / 1000);
  return new SignJWT({ cnf: { jwk: { kty: 'OKP', crv: 'Ed25519', x: node.publicKey.x } }, read: [...opts.read], write: [...opts.write] })
    .setProtectedHeader({ alg: ALG, typ: Typ.grant })
    .setIssuer(authority.id)
    .setSubject(node.id)
    .setIssuedAt(now)
    .setExpirationTime(now + Math.ceil(opts.ttlMs / 1000))
    .setJti(randomBytes(12).toString('base64url'))
    .sign(authority.privateKey);
}

/**
 * The claimed issuer, subject and expiry of a grant, unverified (to find the
 * key to verify it with); undefined unless it is shaped like one: an EdDSA
 * JWS of the grant `typ` in canonical spelling whose `iss` and `sub` look
 * like node ids.
 */
export function peekGrant(token: string): { iss: string; sub: string; exp: number } | undefined {
  if (compactProblem(token, Typ.grant)) return undefined;
  try {
    const p = decodeJwt(token);
    if (typeof p.iss !== 'string' || !B64U_32.test(p.iss) || typeof p.sub !== 'string' || !B64U_32.test(p.sub) || typeof p.exp !== 'number') return undefined;
    return { iss: p.iss, sub: p.sub, exp: p.exp };
  } catch {
    return undefined;
  }
}

/**
 * Verifies a grant against one trusted authority: canonical spelling, EdDSA
 * only, exactly its own typ, issuer = the authority, `sub` = the expected
 * node, `cnf.jwk` an Ed25519 key whose thumbprint is `sub`. `checkExpiry`
 * is true for admission and false for trusting what the node wrote while it
 * was admitted (DESIGN.md §10).
 */
export async function verifyGrant(token: string, authority: { id: NodeId; key: KeyObject }, opts: { sub: NodeId; now: number; checkExpiry: boolean }): Promise<Grant> {
  const problem = compactProblem(token, Typ.grant);
  if (problem) throw new TokenError('ERR_GRANT_INVALID', `grant invalid (${problem})`);
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, authority.key, {
      algorithms: [ALG],
      typ: Typ.grant,
      issuer: authority.id,
      subject: opts.sub,
      requiredClaims: ['iss', 'sub', 'iat', 'exp', 'jti', 'cnf', 'read', 'write'],
      // Admission ends exactly at exp, as the session watching it does.
      clockTolerance: 0,
      // Authorship outlives admission: an expired grant still vouches for what was written under it.
      currentDate: new Date(opts.checkExpiry ? opts.now : 0),
    }));
  } catch (err) {
    if (err instanceof joseErrors.JWTExpired) throw new TokenError('ERR_GRANT_EXPIRED', 'grant expired');
    throw new TokenError('ERR_GRANT_INVALID', err instanceof joseErrors.JOSEError ? `grant invalid (${err.code})` : 'grant invalid');
  }
  const jwk = (payload.cnf as { jwk?: Record<string, unknown> } | undefined)?.jwk;
  if (!jwk || jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string' || !B64U_32.test(jwk.x) || 'd' in jwk) throw new TokenError('ERR_GRANT_INVALID', 'cnf.jwk must be an Ed25519 public key');
  const key: PublicJwk = { kty: 'OKP', crv: 'Ed25519', x: jwk.x };
  if (thumbprint(key) !== opts.sub) throw new TokenError('ERR_GRANT_INVALID', 'cnf.jwk is not the key of sub');
  const globs = (v: unknown) => Array.isArray(v) && v.length <= 256 && v.every((g) => typeof g === 'string' && !globProblem(g));
  if (!globs(payload.read) || !globs(payload.write)) throw new TokenError('ERR_GRANT_INVALID', 'read and write must be lists of globs');
  if (typeof payload.jti !== 'string') throw new TokenError('ERR_GRANT_INVALID', 'jti must be a string');
  return { token, iss: authority.id, sub: opts.sub, key, read: payload.read as string[], write: payload.write as string[], iat: payload.iat!, exp: payload.exp!, jti: payload.jti };
}
