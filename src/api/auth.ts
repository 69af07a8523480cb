import type { KeyPair } from '../identity/keys.js';
import { verifyApiToken, type ApiGrant } from '../tokens/api-token.js';
import { TokenError } from '../errors.js';
import { HttpError } from './http.js';

/** Turns a bearer token into a grant, or a 401 that says why. */
export function apiAuthenticator(opts: { identity: KeyPair; maxTtlMs: number; clockToleranceMs: number; now?: () => number }) {
  return async (token: string | undefined): Promise<ApiGrant> => {
    if (!token) throw new HttpError(401, 'unauthorized', 'a bearer token is required (Authorization: Bearer <token>, or ?token= on stream routes)');
    try {
      return await verifyApiToken(token, {
        nodeId: opts.identity.id,
        publicKey: opts.identity.publicKey,
        maxTtlMs: opts.maxTtlMs,
        clockToleranceMs: opts.clockToleranceMs,
        now: opts.now?.() ?? Date.now(),
      });
    } catch (err) {
      if (err instanceof TokenError) throw new HttpError(401, 'unauthorized', err.message);
      throw err;
    }
  };
}
