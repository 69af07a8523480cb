import { describe, expect, it } from 'vitest';
import { createHmac } from 'node:crypto';
import { SignJWT, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';
import { issueApiToken, scopeProblem, verifyApiToken, type ApiTokenCheck } from '../../../src/tokens/api-token.js';
import { ALG, MAX_TOKEN_BYTES, Typ } from '../../../src/tokens/typ.js';
import { generateKeyPair, type KeyPair } from '../../../src/identity/keys.js';
import { TokenError } from '../../../src/errors.js';

const node = await generateKeyPair();
const stranger = await generateKeyPair();

/** A fixed clock: every test runs at this instant, never the wall clock. */
const NOW = Date.parse('2030-06-01T12:00:00Z');
const HOUR = 3_600_000;
const MAX_TTL = 24 * HOUR;
const TOLERANCE = 30_000;

const check = (over: Partial<ApiTokenCheck> = {}): ApiTokenCheck => ({
  nodeId: node.id,
  publicKey: node.publicKey,
  maxTtlMs: MAX_TTL,
  clockToleranceMs: TOLERANCE,
  now: NOW,
  ...over,
});

const b64u = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

/** The claims issueApiToken would sign at NOW, for hand-built variants. */
function claims(over: Record<string, unknown> = {}): Record<string, unknown> {
  const iat = Math.floor(NOW / 1000);
  return { scope: ['read:**'], iss: node.id, aud: node.id, iat, exp: iat + 3600, jti: 'j1', ...over };
}

/** Signs arbitrary claims and header with EdDSA, bypassing issueApiToken's choices. */
async function signed(payload: Record<string, unknown>, opts: { key?: KeyPair; typ?: string | undefined } = {}): Promise<string> {
  const header: { alg: string; typ?: string } = { alg: ALG };
  const typ = 'typ' in opts ? opts.typ : Typ.api;
  if (typ !== undefined) header.typ = typ;
  return new SignJWT(payload).setProtectedHeader(header).sign((opts.key ?? node).privateKey);
}

async function refused(token: string, over: Partial<ApiTokenCheck> = {}, code = 'ERR_TOKEN_INVALID'): Promise<TokenError> {
  const err = await verifyApiToken(token, check(over)).then(
    () => expect.fail('token was accepted'),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TokenError);
  expect((err as TokenError).code).toBe(code);
  return err as TokenError;
}

describe('local API tokens', () => {
  it('issue → verify round trip, with scopes and expiry', async () => {
    const token = await issueApiToken(node, { scopes: ['read:notes/**', 'write:notes/drafts/*'], ttlMs: HOUR, now: NOW });
    const grant = await verifyApiToken(token, check());
    expect(grant.scopes).toEqual(['read:notes/**', 'write:notes/drafts/*']);
    expect(grant.expiresAt).toBe(NOW + HOUR);
    expect(grant.covers('read', 'notes/a/b')).toBe(true);
    expect(grant.covers('read', 'notes')).toBe(false);
    expect(grant.covers('write', 'notes/a')).toBe(false);
    expect(grant.covers('write', 'notes/drafts/x')).toBe(true);
    expect(grant.covers('write', 'notes/drafts/x/y')).toBe(false);
  });

  it('is a standard compact JWS: EdDSA, its own typ, iss = aud = node id, that jose verifies', async () => {
    const token = await issueApiToken(node, { scopes: ['read:**'], ttlMs: HOUR, now: NOW });
    expect(decodeProtectedHeader(token)).toEqual({ alg: 'EdDSA', typ: 'tessera-api+jwt' });
    const payload = decodeJwt(token);
    expect(payload).toMatchObject({ iss: node.id, aud: node.id, scope: ['read:**'], iat: NOW / 1000, exp: NOW / 1000 + 3600 });
    expect(payload.jti).toEqual(expect.any(String));
    await expect(jwtVerify(token, node.publicKey, { algorithms: ['EdDSA'], currentDate: new Date(NOW) })).resolves.toBeDefined();
  });

  it('every token gets its own jti', async () => {
    const a = decodeJwt(await issueApiToken(node, { scopes: ['read:**'], ttlMs: HOUR, now: NOW }));
    const b = decodeJwt(await issueApiToken(node, { scopes: ['read:**'], ttlMs: HOUR, now: NOW }));
    expect(a.jti).not.toBe(b.jti);
  });

  it('accepts a token up to its expiry plus the clock tolerance', async () => {
    const token = await issueApiToken(node, { scopes: ['read:**'], ttlMs: HOUR, now: NOW });
    await expect(verifyApiToken(token, check({ now: NOW + HOUR - 1000 }))).resolves.toBeDefined();
    await expect(verifyApiToken(token, check({ now: NOW + HOUR + TOLERANCE - 1000 }))).resolves.toBeDefined();
  });

  it('accepts a token whose lifetime is exactly apiTokenMaxTtl', async () => {
    const token = await issueApiToken(node, { scopes: ['read:**'], ttlMs: MAX_TTL, now: NOW });
    await expect(verifyApiToken(token, check({ now: NOW + MAX_TTL - 1000 }))).resolves.toBeDefined();
  });

  describe('refused', () => {
    it('expired (beyond the clock tolerance)', async () => {
      const token = await issueApiToken(node, { scopes: ['read:**'], ttlMs: HOUR, now: NOW });
      const err = await refused(token, { now: NOW + HOUR + TOLERANCE + 1000 });
      expect(err.message).toMatch(/expired/);
    });

    it('issued in the future (beyond the clock tolerance)', async () => {
      const token = await issueApiToken(node, { scopes: ['read:**'], ttlMs: HOUR, now: NOW + 10 * 60_000 });
      await refused(token);
    });

    it('a lifetime above apiTokenMaxTtl, even while unexpired', async () => {
      const token = await issueApiToken(node, { scopes: ['read:**'], ttlMs: MAX_TTL + HOUR, now: NOW });
      const err = await refused(token, { now: NOW + 1000 });
      expect(err.message).toMatch(/apiTokenMaxTtl/);
    });

    it('older than apiTokenMaxTtl (iat too far in the past)', async () => {
      const iat = Math.floor(NOW / 1000) - MAX_TTL / 1000 - 3600;
      await refused(await signed(claims({ iat, exp: iat + 100 * 24 * 3600 })));
    });

    it('a wrong typ, or none', async () => {
      await refused(await signed(claims(), { typ: 'JWT' }));
      await refused(await signed(claims(), { typ: Typ.envelope }));
      await refused(await signed(claims(), { typ: Typ.handshakeDialler }));
      await refused(await signed(claims(), { typ: undefined }));
    });

    it('alg "none" (hand-built, unsigned)', async () => {
      const token = `${b64u({ alg: 'none', typ: Typ.api })}.${b64u(claims())}.`;
      await refused(token);
      // With a bogus signature segment too.
      await refused(`${b64u({ alg: 'none', typ: Typ.api })}.${b64u(claims())}.${b64u('sig')}`);
    });

    it('HS256 signed with the public key bytes (or its JWK x) as the secret', async () => {
      const header = b64u({ alg: 'HS256', typ: Typ.api });
      const body = b64u(claims());
      const secrets = [
        node.publicKey.export({ format: 'der', type: 'spki' }),
        node.publicKey.export({ format: 'pem', type: 'spki' }),
        Buffer.from(node.publicJwk.x, 'base64url'),
        Buffer.from(node.publicJwk.x),
      ];
      for (const secret of secrets) {
        const sig = createHmac('sha256', secret).update(`${header}.${body}`).digest('base64url');
        const err = await refused(`${header}.${body}.${sig}`);
        expect(err.message).toMatch(/algorithm/);
      }
    });

    it('an EdDSA signature relabelled as another algorithm', async () => {
      const good = await signed(claims());
      const [, body, sig] = good.split('.');
      await refused(`${b64u({ alg: 'ES256', typ: Typ.api })}.${body}.${sig}`);
      await refused(`${b64u({ alg: 'Ed25519', typ: Typ.api })}.${body}.${sig}`);
    });

    it('a wrong audience', async () => {
      await refused(await signed(claims({ aud: stranger.id })));
      await refused(await signed(claims({ aud: undefined })));
    });

    it('an audience given as an array, even one containing this node id', async () => {
      const err = await refused(await signed(claims({ aud: [node.id] })));
      expect(err.message).toMatch(/single string/);
      await refused(await signed(claims({ aud: [node.id, stranger.id] })));
    });

    it('a wrong issuer', async () => {
      await refused(await signed(claims({ iss: stranger.id })));
      await refused(await signed(claims({ iss: undefined })));
    });

    it('a missing scope, exp, iat or jti', async () => {
      for (const claim of ['scope', 'exp', 'iat', 'jti']) {
        await refused(await signed(claims({ [claim]: undefined })));
      }
    });

    it('a jti that is not a string of 1 to 256 characters (connections are counted under it)', async () => {
      for (const jti of [42, {}, ['j'], '', 'j'.repeat(257)]) await refused(await signed(claims({ jti })));
      expect((await verifyApiToken(await signed(claims({ jti: 'j'.repeat(256) })), check())).id).toBe('j'.repeat(256));
    });

    it.each([
      ['empty list', []],
      ['a string, not a list', 'read:**'],
      ['unknown access', ['admin:**']],
      ['no glob', ['read:']],
      ['no access', ['notes/**']],
      ['bad glob', ['read:notes//a']],
      ['"**" inside a segment', ['write:notes/a**']],
      ['a number', [42]],
      ['one bad among good', ['read:**', 'write:']],
      ['too many', Array.from({ length: 65 }, (_, i) => `read:n${i}`)],
    ])('bad scope: %s', async (_label, scope) => {
      await refused(await signed(claims({ scope })));
    });

    it('signed by another key, even one claiming this node as issuer', async () => {
      await refused(await signed(claims(), { key: stranger }));
      const forged = await issueApiToken(stranger, { scopes: ['read:**'], ttlMs: HOUR, now: NOW });
      await refused(forged);
    });

    it('a tampered payload', async () => {
      const [h, , s] = (await signed(claims())).split('.');
      await refused(`${h}.${b64u(claims({ scope: ['write:**'] }))}.${s}`);
    });

    it('an oversized token, before parsing', async () => {
      const token = await signed(claims({ pad: 'x'.repeat(MAX_TOKEN_BYTES) }));
      expect(token.length).toBeGreaterThan(MAX_TOKEN_BYTES);
      const err = await refused(token, {}, 'ERR_TOKEN_TOO_LARGE');
      expect(err.message).toMatch(/too large/);
    });

    it('garbage', async () => {
      for (const t of ['', 'a.b', 'a.b.c', 'not a token', `${b64u({ alg: 'EdDSA' })}..`]) await refused(t);
    });
  });

  it('scopeProblem names bad scopes and accepts good ones', () => {
    expect(scopeProblem('read:**')).toBeUndefined();
    expect(scopeProblem('write:notes/*')).toBeUndefined();
    expect(scopeProblem('delete:**')).toMatch(/read:<glob>/);
    expect(scopeProblem('read:a**')).toMatch(/whole segment/);
    expect(scopeProblem('Read:**')).toEqual(expect.any(String));
  });
});
