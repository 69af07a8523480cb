import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import * as Y from 'yjs';
import { generateKeyPair } from '../../src/identity/keys.js';
import { createLogger } from '../../src/log.js';
import { envelopeOps } from '../../src/store/records.js';
import { Store } from '../../src/store/store.js';
import { signEnvelope, updateHash, verifyEnvelope } from '../../src/sync/envelope.js';
import { feedKey, type DocName } from '../../src/types.js';
import { parseUpdate, structRanges } from '../../src/yjs/parse.js';
import { median, quantile, sig } from './stats.js';
import { sleep } from './wait.js';

export interface Floor {
  readonly samples: number;
  /** ms for one sign + one verify + two fsynced batch writes, in sequence. */
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** The parts, each a median in ms. */
  readonly signMs: number;
  readonly verifyMs: number;
  readonly writeMs: number;
}

/**
 * The least one replicated edit costs on this machine: the origin signs an
 * envelope and writes it durably, the receiver verifies it and writes it
 * durably. Measured with the project's own code (signEnvelope,
 * verifyEnvelope, Store with fsync) on a one-character update, in sequence,
 * without any network or Yjs work. With `gapMs`, each sample starts after
 * that long idle, as a paced edit finds the nodes: on a VM the same work
 * costs more after the CPU has slept.
 */
export async function measureFloor(tmp: string, samples = 300, gapMs = 0): Promise<Floor> {
  const dir = await mkdtemp(join(tmp, 'floor-'));
  const pair = await generateKeyPair();
  const stores = await Promise.all(['a', 'b'].map((n) => Store.open(join(dir, n), { durability: 'fsync', log: createLogger({ level: 'silent' }) })));
  const [origin, receiver] = stores as [Store, Store];
  const app = new Y.Doc();
  const updates: Uint8Array[] = [];
  app.on('update', (u: Uint8Array) => updates.push(u));
  const doc = 'bench/floor' as DocName;
  const feed = feedKey(pair.id, origin.feed);
  const total: number[] = [];
  const parts = { sign: [] as number[], verify: [] as number[], write: [] as number[] };
  try {
    for (let i = 0; i < samples + 20; i++) {
      app.getText('t').insert(i, 'x');
      const update = updates[i]!;
      const claims = { iss: pair.id, doc, feed: origin.feed, seq: i + 1, h: updateHash(update), clients: structRanges(parseUpdate(update).structs), iat: Math.floor(Date.now() / 1000) };
      const env = { doc, feed, seq: i + 1, update };
      if (gapMs) await sleep(gapMs);
      const t0 = performance.now();
      const token = signEnvelope(claims, pair.privateKey);
      const t1 = performance.now();
      await origin.write(envelopeOps([{ ...env, token }], new Map([[doc, { [feed]: i + 1 }]])));
      const t2 = performance.now();
      verifyEnvelope(token, update, pair.publicKey);
      const t3 = performance.now();
      await receiver.write(envelopeOps([{ ...env, token }], new Map([[doc, { [feed]: i + 1 }]])));
      const t4 = performance.now();
      if (i < 20) continue;
      total.push(t4 - t0);
      parts.sign.push(t1 - t0);
      parts.verify.push(t3 - t2);
      parts.write.push(t2 - t1, t4 - t3);
    }
  } finally {
    await Promise.all(stores.map((s) => s.close()));
    await rm(dir, { recursive: true, force: true });
  }
  return {
    samples,
    p50Ms: sig(median(total)),
    p99Ms: sig(quantile(total, 0.99)),
    signMs: sig(median(parts.sign)),
    verifyMs: sig(median(parts.verify)),
    writeMs: sig(median(parts.write)),
  };
}
