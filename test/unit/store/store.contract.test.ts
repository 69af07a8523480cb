import { describe, expect, it, onTestFinished } from 'vitest';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { Space, Store, json, type StoreOp } from '../../../src/store/store.js';
import {
  countDocs,
  envelopeOps,
  listDocs,
  readEnvelope,
  readFeed,
  readVector,
  type StoredEnvelope,
  type Vector,
} from '../../../src/store/records.js';
import { feedKey, type DocName, type FeedId, type FeedKey, type NodeId } from '../../../src/types.js';
import { memoryLogger, tempDir } from '../../helpers/node.js';

type Durability = 'fsync' | 'relaxed';

const DIST = pathToFileURL(resolve(import.meta.dirname, '../../../dist')).href;

/** Opens a store whose close is registered the moment it exists. */
async function openStore(path: string, durability: Durability) {
  const { log, lines } = memoryLogger();
  const store = await Store.open(path, { durability, log });
  onTestFinished(() => store.close());
  return { store, lines };
}

const enc = new TextEncoder();
const bytes = (s: string) => enc.encode(s);
const doc = (name: string) => name as DocName;
const feedOf = (iss: string, feed: string): FeedKey => feedKey(iss as NodeId, feed as FeedId);
const ISS_A = 'A'.repeat(43);
const ISS_B = 'B'.repeat(43);

function envelope(d: DocName, feed: FeedKey, seq: number): StoredEnvelope {
  return { doc: d, feed, seq, token: `tok.${d}.${feed}.${seq}`, update: Uint8Array.from([0, seq & 0xff, (seq >> 8) & 0xff, 0, 255]) };
}

/** Bytes compared as bytes, whichever Uint8Array subclass the store hands back. */
const buf = (b: Uint8Array | undefined) => (b === undefined ? undefined : Buffer.from(b));
const norm = (e: StoredEnvelope | undefined) => (e === undefined ? undefined : { ...e, update: Buffer.from(e.update) });

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/**
 * A child process running the compiled store (dist/), so that a LevelDB lock
 * is held by another process, or dropped by SIGKILL as an unclean stop.
 * `hold`: open, write, report the feed, wait to be killed. `open`: open,
 * report the feed or the error, close, exit.
 */
const CHILD = `
const [dist, path, durability, mode] = process.argv.slice(1);
const { Store } = await import(dist + '/store/store.js');
const { createLogger } = await import(dist + '/log.js');
const log = createLogger({ level: 'silent' });
try {
  const store = await Store.open(path, { durability, log });
  if (mode === 'hold') {
    await store.write([{ type: 'put', space: 'v', key: 'child-doc', value: new TextEncoder().encode('{"x":1}') }]);
    process.stdout.write(JSON.stringify({ feed: store.feed, fresh: store.freshFeed }) + '\\n');
    setInterval(() => {}, 1 << 30);
  } else {
    const feed = store.feed;
    await store.close();
    process.stdout.write(JSON.stringify({ feed }) + '\\n');
  }
} catch (err) {
  process.stdout.write(JSON.stringify({ error: { name: err.name, code: err.code, message: err.message } }) + '\\n');
  process.exitCode = 3;
}
`;

interface ChildReport {
  feed?: string;
  fresh?: boolean;
  error?: { name: string; code: string; message: string };
}

function storeChild(path: string, durability: Durability, mode: 'hold' | 'open') {
  const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD, DIST, path, durability, mode], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
  onTestFinished(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const report = new Promise<ChildReport>((res, rej) => {
    createInterface({ input: child.stdout }).once('line', (l) => res(JSON.parse(l) as ChildReport));
    void exited.then(({ code }) => rej(new Error(`store child exited (${code}) without a report: ${stderr}`)));
  });
  return { child, report, exited };
}

/**
 * The contract every Store must keep (DESIGN.md §6), run against real LevelDB
 * folders, once per durability.
 */
function storeContract(durability: Durability) {
  const open = (path: string) => openStore(path, durability);

  describe(`Store contract (LevelDB, durability "${durability}")`, () => {
    it('reads back what it writes, per key space, and missing keys are undefined', async () => {
      const { store } = await open(join(await tempDir(), 'store'));
      await store.write([
        { type: 'put', space: Space.meta, key: 'k', value: bytes('meta') },
        { type: 'put', space: Space.vector, key: 'k', value: bytes('vector') },
        { type: 'put', space: Space.snapshot, key: 'k', value: new Uint8Array([0, 1, 2, 0]) },
      ]);
      expect(new TextDecoder().decode(await store.get(Space.meta, 'k'))).toBe('meta');
      expect(new TextDecoder().decode(await store.get(Space.vector, 'k'))).toBe('vector');
      expect(buf(await store.get(Space.snapshot, 'k'))).toEqual(Buffer.from([0, 1, 2, 0]));
      expect(await store.get(Space.overlap, 'k')).toBeUndefined();
      expect(await store.getJson(Space.grant, 'nothing')).toBeUndefined();

      await store.write([{ type: 'del', space: Space.vector, key: 'k' }]);
      expect(await store.get(Space.vector, 'k')).toBeUndefined();
      expect(await store.get(Space.meta, 'k')).toBeDefined();
    });

    it('a scan of one key space never leaks into another', async () => {
      const { store } = await open(join(await tempDir(), 'store'));
      const ops: StoreOp[] = Object.values(Space).flatMap((space) => [
        { type: 'put' as const, space, key: 'a', value: bytes(space) },
        { type: 'put' as const, space, key: 'z\u007f', value: bytes(space) },
      ]);
      await store.write(ops);
      for (const space of Object.values(Space)) {
        if (space === Space.meta) continue; // holds the store's own keys too
        const entries = await collect(store.entries(space));
        expect(entries.map(([k, v]) => [k, new TextDecoder().decode(v)])).toEqual([
          ['a', space],
          ['z\u007f', space],
        ]);
      }
    });

    it('a batch is all there or not at all: a batch with an invalid op writes nothing', async () => {
      const path = join(await tempDir(), 'store');
      const { store, lines } = await open(path);
      const bad: StoreOp[] = [
        { type: 'put', space: Space.envelope, key: 'e1', value: bytes('1') },
        { type: 'put', space: Space.vector, key: 'v1', value: json.encode({ f: 1 }) },
        { type: 'put', space: Space.envelope, key: 'e2', value: undefined as unknown as Uint8Array },
      ];
      for (const value of [null, 'text', 7, [1]]) {
        const err = await store.write([...bad.slice(0, 2), { type: 'put', space: Space.envelope, key: 'e3', value: value as unknown as Uint8Array }]).catch((e: unknown) => e);
        expect(err).toMatchObject({ name: 'StoreError', code: 'ERR_STORE' });
      }
      expect(await store.get(Space.envelope, 'e3')).toBeUndefined();
      const err = await store.write(bad).catch((e: unknown) => e);
      expect(err).toMatchObject({ name: 'StoreError', code: 'ERR_STORE' });
      expect(await store.get(Space.envelope, 'e1')).toBeUndefined();
      expect(await store.get(Space.vector, 'v1')).toBeUndefined();
      // Never swallowed: it reached the caller, and the log.
      expect(lines.some((l) => l.level === 50 && String(l.msg).includes('store write failed'))).toBe(true);
      expect(store.writable).toBe(false);

      // The store reopens itself before the next write, which then succeeds.
      await store.write([{ type: 'put', space: Space.vector, key: 'v2', value: json.encode({ f: 2 }) }]);
      expect(store.writable).toBe(true);
      expect(lines.some((l) => l.msg === 'store reopened after a write error')).toBe(true);
      expect(await store.getJson(Space.vector, 'v2')).toEqual({ f: 2 });

      await store.close();
      const { store: again } = await open(path);
      expect(await again.get(Space.envelope, 'e1')).toBeUndefined();
      expect(await again.get(Space.vector, 'v1')).toBeUndefined();
      expect(await again.getJson(Space.vector, 'v2')).toEqual({ f: 2 });
    });

    it('a batch spanning key spaces is all there after a reopen', async () => {
      const path = join(await tempDir(), 'store');
      const { store } = await open(path);
      const d = doc('notes/a');
      const f = feedOf(ISS_A, 'f1');
      const envs = [envelope(d, f, 1), envelope(d, f, 2)];
      await store.write([...envelopeOps(envs, new Map([[d, { [f]: 2 }]])), { type: 'put', space: Space.overlap, key: 'idx', value: bytes('o') }]);
      await store.close();

      const { store: again } = await open(path);
      expect(await readVector(again, d)).toEqual({ [f]: 2 });
      expect(norm(await readEnvelope(again, d, f, 1))).toEqual(norm(envs[0]));
      expect(norm(await readEnvelope(again, d, f, 2))).toEqual(norm(envs[1]));
      expect(buf(await again.get(Space.overlap, 'idx'))).toEqual(Buffer.from('o'));
    });

    it('reopen returns exactly what was written, bytes included', async () => {
      const path = join(await tempDir(), 'store');
      const { store } = await open(path);
      const blobs = new Map<string, Uint8Array>();
      for (let i = 0; i < 50; i++) blobs.set(`k${i}`, randomBytes(i * 37));
      await store.write([...blobs].map(([key, value]) => ({ type: 'put' as const, space: Space.snapshot, key, value })));
      await store.write([{ type: 'del', space: Space.snapshot, key: 'k7' }]);
      blobs.delete('k7');
      await store.close();

      const { store: again } = await open(path);
      const back = new Map((await collect(again.entries(Space.snapshot))).map(([k, v]) => [k, Buffer.from(v)]));
      expect(back).toEqual(new Map([...blobs].map(([k, v]) => [k, Buffer.from(v)])));
    });

    it('vectors and envelopes agree after envelopeOps', async () => {
      const path = join(await tempDir(), 'store');
      const { store } = await open(path);
      const docs = [doc('notes/a'), doc('notes/a/b'), doc('shared')];
      const feeds = [feedOf(ISS_A, 'f1'), feedOf(ISS_A, 'f2'), feedOf(ISS_B, 'f1')];
      const vectors = new Map<DocName, Vector>(docs.map((d) => [d, {}]));
      // Append in batches of varying sizes, each batch carrying the vectors it changes.
      let round = 0;
      for (let step = 0; step < 40; step++) {
        const d = docs[step % docs.length]!;
        const f = feeds[(step * 7) % feeds.length]!;
        const v = vectors.get(d)!;
        const n = 1 + (round++ % 5);
        const from = (v[f] ?? 0) + 1;
        const envs = Array.from({ length: n }, (_, i) => envelope(d, f, from + i));
        v[f] = from + n - 1;
        await store.write(envelopeOps(envs, new Map([[d, { ...v }]])));
      }
      const check = async (s: Store) => {
        expect(await countDocs(s)).toBe(docs.length);
        const listed = await collect(listDocs(s));
        expect(listed.map((x) => x.doc)).toEqual([...docs].sort());
        for (const { doc: d, vector } of listed) {
          expect(vector).toEqual(vectors.get(d));
          expect(await readVector(s, d)).toEqual(vector);
          for (const f of feeds) {
            const held = await collect(readFeed(s, d, f));
            // Every seq the vector counts is held, contiguous from 1, and nothing beyond it.
            expect(held.map((e) => e.seq)).toEqual(Array.from({ length: vector[f] ?? 0 }, (_, i) => i + 1));
            for (const e of held) expect(norm(e)).toEqual(norm(envelope(d, f, e.seq)));
            expect(await readEnvelope(s, d, f, (vector[f] ?? 0) + 1)).toBeUndefined();
          }
        }
      };
      await check(store);
      await store.close();
      const { store: again } = await open(path);
      await check(again);
    });

    it('readFeed returns envelopes in seq order (past 15, 255, 4095) and resumes after a seq', async () => {
      const { store } = await open(join(await tempDir(), 'store'));
      const d = doc('notes/a');
      const f = feedOf(ISS_A, 'f');
      const N = 300;
      const seqs = Array.from({ length: N }, (_, i) => i + 1);
      // Written out of order, in several batches, so key order is what sorts them.
      const shuffled = [...seqs].sort((a, b) => ((a * 7919) % 307) - ((b * 7919) % 307));
      for (let i = 0; i < shuffled.length; i += 64) {
        await store.write(envelopeOps(shuffled.slice(i, i + 64).map((s) => envelope(d, f, s)), new Map()));
      }
      const seqsOf = async (after?: number, limit?: number) => (await collect(readFeed(store, d, f, after, limit))).map((e) => e.seq);
      expect(await seqsOf()).toEqual(seqs);
      expect(await seqsOf(15)).toEqual(seqs.slice(15));
      expect(await seqsOf(16)).toEqual(seqs.slice(16));
      expect(await seqsOf(255)).toEqual(seqs.slice(255));
      expect(await seqsOf(256)).toEqual(seqs.slice(256));
      expect(await seqsOf(299)).toEqual([300]);
      expect(await seqsOf(300)).toEqual([]);
      expect(await seqsOf(1000)).toEqual([]);
      expect(await seqsOf(0, 3)).toEqual([1, 2, 3]);
      expect(await seqsOf(254, 3)).toEqual([255, 256, 257]);
      const all = await collect(readFeed(store, d, f));
      expect(norm(all[199])).toEqual(norm(envelope(d, f, 200)));
    });

    it('readFeed orders sparse large seqs numerically, not as strings', async () => {
      const { store } = await open(join(await tempDir(), 'store'));
      const d = doc('x');
      const f = feedOf(ISS_A, 'f');
      const seqs = [2 ** 32 + 1, 65_536, 10, 9, 4096, 4095, 256, 255, 16, 15, 100, 1, 2 ** 40];
      await store.write(envelopeOps(seqs.map((s) => envelope(d, f, s)), new Map()));
      expect((await collect(readFeed(store, d, f))).map((e) => e.seq)).toEqual([...seqs].sort((a, b) => a - b));
      expect((await collect(readFeed(store, d, f, 4095))).map((e) => e.seq)).toEqual([4096, 65_536, 2 ** 32 + 1, 2 ** 40]);
    });

    it('readFeed never mixes documents or feeds that share a prefix', async () => {
      const { store } = await open(join(await tempDir(), 'store'));
      const f = feedOf(ISS_A, 'f');
      const f2 = feedOf(ISS_A, 'f2');
      const fB = feedOf(ISS_B, 'f');
      const docs = [doc('a'), doc('a/b'), doc('ab'), doc('a.b')];
      const envs = docs.flatMap((d) => [f, f2, fB].flatMap((feed) => [1, 2, 3].map((s) => envelope(d, feed, s))));
      await store.write(envelopeOps(envs, new Map()));
      for (const d of docs) {
        for (const feed of [f, f2, fB]) {
          const got = await collect(readFeed(store, d, feed));
          expect(got.map(norm)).toEqual([1, 2, 3].map((s) => norm(envelope(d, feed, s))));
        }
      }
    });

    it('envelope tokens and update bytes round-trip, an empty update included', async () => {
      const { store } = await open(join(await tempDir(), 'store'));
      const d = doc('notes/a');
      const f = feedOf(ISS_A, 'f');
      const e1: StoredEnvelope = { doc: d, feed: f, seq: 1, token: 'h.p.s', update: new Uint8Array() };
      const e2: StoredEnvelope = { doc: d, feed: f, seq: 2, token: 'x'.repeat(5000), update: randomBytes(70_000) };
      await store.write(envelopeOps([e1, e2], new Map()));
      const back = await collect(readFeed(store, d, f));
      expect(back.map(norm)).toEqual([e1, e2].map(norm));
    });

    it('keeps its feed id across a clean reopen; a new store gets a new feed', async () => {
      const path = join(await tempDir(), 'store');
      const { store } = await open(path);
      expect(store.feed).toMatch(/^[A-Za-z0-9_-]{16,64}$/);
      expect(store.freshFeed).toBe(true);
      const feed = store.feed;
      await store.close();

      const { store: again } = await open(path);
      expect(again.feed).toBe(feed);
      expect(again.freshFeed).toBe(false);

      const { store: other } = await open(join(await tempDir(), 'store'));
      expect(other.feed).not.toBe(feed);
    });

    it('close() is safe twice; a write after close is refused', async () => {
      const { store } = await open(join(await tempDir(), 'store'));
      await store.close();
      await store.close();
      expect(store.writable).toBe(false);
      await expect(store.write([{ type: 'put', space: Space.meta, key: 'x', value: bytes('1') }])).rejects.toMatchObject({ code: 'ERR_STORE' });
    });

    it('a second open of the same path in another process fails with DataDirInUseError; the first is unaffected', async () => {
      const path = join(await tempDir(), 'store');
      const { store } = await open(path);
      await store.write([{ type: 'put', space: Space.vector, key: 'before', value: json.encode(1) }]);

      const second = storeChild(path, durability, 'open');
      const report = await second.report;
      expect(report.error).toMatchObject({ name: 'DataDirInUseError', code: 'ERR_DATA_DIR_IN_USE' });
      expect(report.error!.message).toMatch(/in use by another Tessera process/);
      expect((await second.exited).code).toBe(3);

      // The first open still holds the lock and works.
      await store.write([{ type: 'put', space: Space.vector, key: 'after', value: json.encode(2) }]);
      expect(await store.getJson(Space.vector, 'before')).toBe(1);
      expect(await store.getJson(Space.vector, 'after')).toBe(2);
      const third = storeChild(path, durability, 'open');
      expect((await third.report).error?.code).toBe('ERR_DATA_DIR_IN_USE');

      // Once closed, another process may open it, and sees the same feed.
      const feed = store.feed;
      await store.close();
      const fourth = storeChild(path, durability, 'open');
      expect(await fourth.report).toEqual({ feed });
    });
  });
}

storeContract('fsync');
storeContract('relaxed');

describe('Store after an unclean stop (SIGKILL of the process holding it)', () => {
  async function killedWhileOpen(durability: Durability) {
    const path = join(await tempDir(), 'store');
    // A first, clean life, so the feed exists before the unclean one.
    const first = await openStore(path, durability);
    const feed = first.store.feed;
    await first.store.close();

    const holder = storeChild(path, durability, 'hold');
    const report = await holder.report;
    expect(report).toEqual({ feed, fresh: false });
    holder.child.kill('SIGKILL');
    expect((await holder.exited).signal).toBe('SIGKILL');
    return { path, feed };
  }

  it('with durability "relaxed" starts a new feed, and says so', async () => {
    const { path, feed } = await killedWhileOpen('relaxed');
    const { store, lines } = await openStore(path, 'relaxed');
    expect(store.feed).not.toBe(feed);
    expect(store.freshFeed).toBe(true);
    expect(lines.some((l) => l.level === 40 && l.previous === feed && l.feed === store.feed)).toBe(true);

    // The new feed is kept across a later clean reopen.
    const next = store.feed;
    await store.close();
    const { store: again } = await openStore(path, 'relaxed');
    expect(again.feed).toBe(next);
    expect(again.freshFeed).toBe(false);
  });

  it('with durability "fsync" keeps the feed and what was acknowledged', async () => {
    const { path, feed } = await killedWhileOpen('fsync');
    const { store } = await openStore(path, 'fsync');
    expect(store.feed).toBe(feed);
    expect(store.freshFeed).toBe(false);
    expect(await store.getJson(Space.vector, 'child-doc')).toEqual({ x: 1 });
  });
});
