import { randomBytes } from 'node:crypto';
import { SignJWT, jwtVerify, errors as joseErrors } from 'jose';
import { TokenError } from '../errors.js';
import type { KeyPair } from '../identity/keys.js';
import { globProblem, globMatches } from '../config/glob.js';
import type { KeyObject } from 'node:crypto';
import type { NodeId } from '../types.js';
import { ALG, MAX_TOKEN_BYTES, Typ } from './typ.js';

export type Access = 'read' | 'write';

/** The scopes of a verified local API token. */
export interface ApiGrant {
  /** The token's `jti`: what its connections are counted under. */
  readonly id: string;
  readonly scopes: readonly string[];
  readonly expiresAt: number;
  covers(access: Access, doc: string): boolean;
}

const SCOPE = /^(read|write):(.+)$/;

/** Why a scope string is invalid, or undefined. */
export function scopeProblem(scope: string): string | undefined {
  const m = SCOPE.exec(scope);
  if (!m) return `scope ${JSON.stringify(scope)} must be "read:<glob>" or "write:<glob>"`;
  const g = globProblem(m[2]!);
  return g ? `scope ${JSON.stringify(scope)}: ${g}` : undefined;
}

/** Signs a local API token for this node (`iss` = `aud` = its id). */
export async function issueApiToken(pair: KeyPair, opts: { scopes: readonly string[]; ttlMs: number; now?: number }): Promise<string> {
  const now = Math.floor((opts.now ?? Date.now()) / 1000);
  return new SignJWT({ scope: [...opts.scopes] })
    .setProtectedHeader({ alg: ALG, typ: Typ.api })
    .setIssuer(pair.id)
    .setAudience(pair.id)
    .setIssuedAt(now)
    .setExpirationTime(now + Math.ceil(opts.ttlMs / 1000))
    .setJti(randomBytes(12).toString('base64url'))
    .sign(pair.privateKey);
}

export interface ApiTokenCheck {
  readonly nodeId: NodeId;
  readonly publicKey: KeyObject;
  readonly maxTtlMs: number;
  readonly clockToleranceMs: number;
  readonly now?: number;
}

/**
 * Verifies a local API token: EdDSA only, its own typ, issuer and audience
 * this node, exp/iat/jti/scope required, lifetime within apiTokenMaxTtl.
 */
export async function verifyApiToken(token: string, check: ApiTokenCheck): Promise<ApiGrant> {
  if (token.length > MAX_TOKEN_BYTES) throw new TokenError('ERR_TOKEN_TOO_LARGE', 'token too large');
  const now = check.now ?? Date.now();
  let payload;
  try {
    ({ payload } = await jwtVerify(token, check.publicKey, {
      algorithms: [ALG],
      typ: Typ.api,
      issuer: check.nodeId,
      audience: check.nodeId,
      requiredClaims: ['exp', 'iat', 'jti', 'scope'],
      maxTokenAge: Math.ceil(check.maxTtlMs / 1000),
      clockTolerance: Math.ceil(check.clockToleranceMs / 1000),
      currentDate: new Date(now),
    }));
  } catch (err) {
    throw new TokenError('ERR_TOKEN_INVALID', describe(err));
  }
  if (typeof payload.aud !== 'string') throw new TokenError('ERR_TOKEN_INVALID', 'aud must be a single string');
  if (payload.exp! - payload.iat! > Math.ceil(check.maxTtlMs / 1000)) throw new TokenError('ERR_TOKEN_INVALID', 'token lifetime exceeds apiTokenMaxTtl');
  // jose requires a jti but not that it be a string.
  if (typeof payload.jti !== 'string' || payload.jti.length === 0 || payload.jti.length > 256) throw new TokenError('ERR_TOKEN_INVALID', 'token claim "jti" must be a string of 1 to 256 characters');
  const scope = payload.scope;
  if (!Array.isArray(scope) || scope.length === 0 || scope.length > 64 || !scope.every((s) => typeof s === 'string' && !scopeProblem(s))) {
    throw new TokenError('ERR_TOKEN_INVALID', 'scope must be a non-empty list of "read:<glob>" / "write:<glob>"');
  }
  return grantFor(payload.jti, scope as string[], payload.exp! * 1000);
}

function grantFor(id: string, scopes: readonly string[], expiresAt: number): ApiGrant {
  const parsed = scopes.map((s) => SCOPE.exec(s)!).map((m) => ({ access: m[1] as Access, glob: m[2]! }));
  return {
    id,
    scopes,
    expiresAt,
    covers: (access, doc) => parsed.some((p) => p.access === access && globMatches(p.glob, doc)),
  };
}

/** A short reason safe to return to an API client. */
function describe(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return 'token expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed) return `token claim "${err.claim}" invalid: ${err.reason}`;
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return 'token algorithm not allowed';
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'token signature invalid';
  if (err instanceof joseErrors.JOSEError) return `token invalid (${err.code})`;
  return 'token invalid';
}
