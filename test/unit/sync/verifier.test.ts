import { afterEach, describe, expect, it } from 'vitest';
import { generateKeyPair } from '../../../src/identity/keys.js';
import { createLogger } from '../../../src/log.js';
import { signatureParts, signEnvelope, updateHash } from '../../../src/sync/envelope.js';
import { Verifier, type SignatureJob } from '../../../src/sync/verifier.js';
import type { DocName, FeedId } from '../../../src/types.js';

const log = createLogger({ level: 'silent' });

describe('the signature verifier: big batches split with a worker thread, small ones on the main thread', async () => {
  const [a, b] = await Promise.all([generateKeyPair(), generateKeyPair()]);
  const job = (i: number, how: 'ok' | 'other key' | 'tampered' | 'hash' = 'ok'): SignatureJob => {
    const update = new Uint8Array([1, 1, 210, 9, i % 200, 4, 1, 1, 116, 0]);
    const token = signEnvelope({ iss: a.id, doc: 'v/a' as DocName, feed: 'AAECAwQFBgcICQoLDA0ODw' as FeedId, seq: i + 1, h: updateHash(update), clients: [[1234, 0, 1]], iat: 1_893_456_000 }, how === 'other key' ? b.privateKey : a.privateKey);
    const { input, sig } = signatureParts(token);
    if (how === 'tampered') input[input.length - 1] ^= 1;
    return { input, sig, key: a.publicKey, update: how === 'hash' ? new Uint8Array([...update, 0]) : update, h: updateHash(update) };
  };
  const verifiers: Verifier[] = [];
  const verifier = (minBatch?: number) => {
    const v = new Verifier({ log, minBatch });
    verifiers.push(v);
    return v;
  };
  afterEach(async () => {
    await Promise.all(verifiers.splice(0).map((v) => v.close()));
  });

  it('judges every envelope of a big batch, on both sides of the split, in order', async () => {
    const bad = new Map<number, 'other key' | 'tampered' | 'hash'>([[0, 'other key'], [3, 'tampered'], [50, 'hash'], [97, 'other key'], [99, 'hash']]);
    const jobs = Array.from({ length: 100 }, (_, i) => job(i, bad.get(i) ?? 'ok'));
    const verdicts = await verifier(8).verify(jobs);
    expect(verdicts).toHaveLength(100);
    for (let i = 0; i < 100; i++) {
      const how = bad.get(i);
      expect(verdicts[i], `envelope ${i}`).toBe(how === undefined ? 'ok' : how === 'hash' ? 'hash' : 'signature');
    }
  });

  it('a small batch gets the same verdicts without the worker', async () => {
    const verdicts = await verifier(32).verify([job(1), job(2, 'tampered'), job(3, 'hash')]);
    expect(verdicts).toEqual(['ok', 'signature', 'hash']);
  });

  it('many batches at once each get their own verdicts', async () => {
    const v = verifier(4);
    const batches = Array.from({ length: 10 }, (_, k) => Array.from({ length: 20 }, (_, i) => job(i, i === k ? 'tampered' : 'ok')));
    const results = await Promise.all(batches.map((jobs) => v.verify(jobs)));
    for (const [k, verdicts] of results.entries()) expect(verdicts.map((x, i) => (x !== 'ok' ? i : -1)).filter((i) => i >= 0)).toEqual([k]);
  });

  it('a batch after close is still verified (on the main thread)', async () => {
    const v = verifier(4);
    await v.verify(Array.from({ length: 10 }, (_, i) => job(i)));
    await v.close();
    const verdicts = await v.verify(Array.from({ length: 10 }, (_, i) => job(i, i === 5 ? 'other key' : 'ok')));
    expect(verdicts.filter((v) => v !== 'ok')).toEqual(['signature']);
  });

  it('a batch in flight when the verifier closes is still judged (on the main thread)', async () => {
    const v = verifier(4);
    const pending = v.verify(Array.from({ length: 200 }, (_, i) => job(i, i === 7 ? 'tampered' : 'ok')));
    await v.close();
    const verdicts = await pending;
    expect(verdicts).toHaveLength(200);
    expect(verdicts.map((x, i) => (x !== 'ok' ? i : -1)).filter((i) => i >= 0)).toEqual([7]);
  });
});
