import { describe, expect, it } from 'vitest';
import { createHmac } from 'node:crypto';
import { SignJWT, jwtVerify } from 'jose';
import { generateKeyPair } from '../../../src/identity/keys.js';
import { signEnvelope, updateHash, verifyEnvelope, EnvelopeError, type EnvelopeClaims } from '../../../src/sync/envelope.js';
import type { DocName, FeedId } from '../../../src/types.js';

/**
 * DESIGN.md §1: the hot path may sign and verify envelopes with node:crypto
 * only if jose accepts what it signs and it refuses what jose refuses.
 */
describe('envelopes signed and verified with node:crypto, checked against jose', async () => {
  const origin = await generateKeyPair();
  const other = await generateKeyPair();
  const update = new Uint8Array([1, 1, 210, 9, 0, 4, 1, 1, 116, 2, 104, 105, 0]);
  const claims: EnvelopeClaims = { iss: origin.id, doc: 'notes/a' as DocName, feed: 'AAECAwQFBgcICQoLDA0ODw' as FeedId, seq: 1, h: updateHash(update), clients: [[1234, 0, 2]], iat: 1_893_456_000 };
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const joseOk = async (token: string) => {
    try {
      await jwtVerify(token, origin.publicKey, { algorithms: ['EdDSA'], typ: 'tessera-envelope+jwt' });
      return true;
    } catch {
      return false;
    }
  };
  const oursOk = (token: string) => {
    try {
      verifyEnvelope(token, update, origin.publicKey);
      return true;
    } catch (err) {
      expect(err).toBeInstanceOf(EnvelopeError);
      return false;
    }
  };

  it('jose accepts what Tessera signs, with the same claims', async () => {
    const token = signEnvelope(claims, origin.privateKey);
    const { payload, protectedHeader } = await jwtVerify(token, origin.publicKey, { algorithms: ['EdDSA'], typ: 'tessera-envelope+jwt' });
    expect(protectedHeader).toEqual({ alg: 'EdDSA', typ: 'tessera-envelope+jwt' });
    expect(payload).toEqual({ ...claims });
    expect(oursOk(token)).toBe(true);
  });

  it('whatever jose refuses, Tessera refuses too', async () => {
    const good = signEnvelope(claims, origin.privateKey);
    const [h, p, sig] = good.split('.') as [string, string, string];
    const hmac = (header: object) => {
      const input = `${b64(header)}.${p}`;
      const key = Buffer.from(origin.publicJwk.x, 'base64url');
      return `${input}.${createHmac('sha256', key).update(input).digest('base64url')}`;
    };
    const flip = (s: string) => (s[5] === 'A' ? s.slice(0, 5) + 'B' + s.slice(6) : s.slice(0, 5) + 'A' + s.slice(6));
    const hostile = [
      `${b64({ alg: 'none', typ: 'tessera-envelope+jwt' })}.${p}.`,
      hmac({ alg: 'HS256', typ: 'tessera-envelope+jwt' }),
      signEnvelope(claims, other.privateKey),
      `${h}.${b64({ ...claims, seq: 2 })}.${sig}`,
      `${h}.${p}.${flip(sig)}`,
      await new SignJWT({ ...claims }).setProtectedHeader({ alg: 'EdDSA', typ: 'tessera-grant+jwt' }).sign(origin.privateKey),
      await new SignJWT({ ...claims }).setProtectedHeader({ alg: 'EdDSA' }).sign(origin.privateKey),
      await new SignJWT({ ...claims }).setProtectedHeader({ alg: 'EdDSA', typ: 'tessera-envelope+jwt', crit: ['x'], x: 1 } as never).sign(origin.privateKey).catch(() => `${b64({ alg: 'EdDSA', typ: 'tessera-envelope+jwt', crit: ['x'] })}.${p}.${sig}`),
      `${h}.${p}`,
      `${h}.${p}.${sig}.extra`,
    ];
    for (const token of hostile) {
      if (!(await joseOk(token))) expect(oursOk(token), token).toBe(false);
    }
  });

  it('refuses more than jose where the bytes beside the token do not match h', () => {
    const token = signEnvelope(claims, origin.privateKey);
    expect(() => verifyEnvelope(token, new Uint8Array([0, 0]), origin.publicKey)).toThrow(EnvelopeError);
  });
});
