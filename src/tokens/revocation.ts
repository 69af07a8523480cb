import { randomBytes, type KeyObject } from 'node:crypto';
import { SignJWT, jwtVerify, decodeJwt, type JWTPayload } from 'jose';
import { TokenError } from '../errors.js';
import type { KeyPair } from '../identity/keys.js';
import { RevokedSchema, type Cutoff } from '../config/peers.js';
import { type NodeId, B64U_32 } from '../types.js';
import { ALG, Typ } from './typ.js';
import { compactProblem } from './compact.js';

/** A verified authority revocation: `sub` is revoked, keeping what the cutoff says. */
export interface Revocation {
  readonly token: string;
  readonly iss: NodeId;
  readonly sub: NodeId;
  readonly at: string;
  readonly cutoff: Cutoff;
}

/** `tessera revoke`: an authority-signed revocation of a node, with its cutoff (default `"*": {}`: nothing kept). */
export function issueRevocation(authority: KeyPair, node: NodeId, cutoff: Cutoff = { '*': {} }, now = Date.now()): Promise<string> {
  const at = new Date(now).toISOString();
  return new SignJWT({ at, cutoff })
    .setProtectedHeader({ alg: ALG, typ: Typ.revocation })
    .setIssuer(authority.id)
    .setSubject(node)
    .setIssuedAt(Math.floor(now / 1000))
    .setJti(randomBytes(12).toString('base64url'))
    .sign(authority.privateKey);
}

/**
 * The claimed issuer and subject of a revocation, unverified (to find the key
 * to verify it with); undefined unless it is shaped like one: an EdDSA JWS of
 * the revocation `typ` in canonical spelling, `iss` and `sub` that look like
 * node ids, and a well-formed `at` and cutoff.
 */
export function peekRevocation(token: string): { iss: string; sub: string } | undefined {
  if (compactProblem(token, Typ.revocation)) return undefined;
  try {
    const p = decodeJwt(token);
    if (typeof p.iss !== 'string' || !B64U_32.test(p.iss) || typeof p.sub !== 'string' || !B64U_32.test(p.sub)) return undefined;
    if (!RevokedSchema.safeParse({ at: p.at, cutoff: p.cutoff }).success) return undefined;
    return { iss: p.iss, sub: p.sub };
  } catch {
    return undefined;
  }
}

/**
 * Verifies a revocation against a trusted authority: canonical spelling,
 * EdDSA only, exactly its own typ, issuer = the authority, `sub` a node id.
 * Revocations do not expire: a revocation is permanent for that node id, so
 * one carrying `exp` or `nbf` (which would bind today and not tomorrow, or
 * on some nodes and not others) is invalid.
 */
export async function verifyRevocation(token: string, authority: { id: NodeId; key: KeyObject }): Promise<Revocation> {
  const problem = compactProblem(token, Typ.revocation);
  if (problem) throw new TokenError('ERR_REVOCATION_INVALID', `revocation invalid (${problem})`);
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, authority.key, { algorithms: [ALG], typ: Typ.revocation, issuer: authority.id, requiredClaims: ['iss', 'sub', 'iat', 'jti', 'at', 'cutoff'] }));
  } catch {
    throw new TokenError('ERR_REVOCATION_INVALID', 'revocation does not verify');
  }
  if (payload.exp !== undefined || payload.nbf !== undefined) throw new TokenError('ERR_REVOCATION_INVALID', 'a revocation has no exp or nbf: it is permanent');
  if (typeof payload.sub !== 'string' || !B64U_32.test(payload.sub)) throw new TokenError('ERR_REVOCATION_INVALID', 'revocation sub must be a node id');
  if (typeof payload.jti !== 'string') throw new TokenError('ERR_REVOCATION_INVALID', 'jti must be a string');
  const parsed = RevokedSchema.safeParse({ at: payload.at, cutoff: payload.cutoff });
  if (!parsed.success) throw new TokenError('ERR_REVOCATION_INVALID', 'revocation cutoff is malformed');
  return { token, iss: authority.id, sub: payload.sub as NodeId, at: parsed.data.at, cutoff: parsed.data.cutoff };
}
