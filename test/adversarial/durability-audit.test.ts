/**
 * Durability and crash safety (DESIGN.md §4, §6, §9): no half-written
 * record, no acknowledged write lost, and a store left by a crash or a
 * failed write opens again, verifies, and holds every acknowledged write,
 * with no seq of the node's own feed used twice.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ClassicLevel } from 'classic-level';
import { describe, expect, it, onTestFinished } from 'vitest';
import * as Y from 'yjs';
import { readKeyFile } from '../../src/identity/file.js';
import { generateKeyPair, type KeyPair } from '../../src/identity/keys.js';
import { envelopeKey, type Vector } from '../../src/store/records.js';
import { Space, Store } from '../../src/store/store.js';
import { decodeSnapshot } from '../../src/sync/doc-records.js';
import { issueApiToken } from '../../src/tokens/api-token.js';
import { feedKey, type DocName, type FeedId, type FeedKey, type NodeId } from '../../src/types.js';
import { setPeers, testNode, type TestNode } from '../helpers/cluster.js';
import { appDoc, getDoc, postUpdate } from '../helpers/docs.js';
import { nodeDir, runCli, spawnNode, writePeers, type SpawnedNode } from '../helpers/node.js';
import { STORE_DIR } from '../../src/init.js';
import { waitUntil } from '../helpers/wait.js';
import { envelope as signed } from '../helpers/raw-peer.js';

type RawOp = { type: 'put' | 'del'; key: string };
type BatchFn = (this: ClassicLevel<string, Uint8Array>, ops: RawOp[], options: unknown) => Promise<void>;

/**
 * Watches (and can fail) every LevelDB write batch of this process, below the
 * Store: a failure here is what a full disk or an I/O error looks like to it.
 */
function batches() {
  const proto = ClassicLevel.prototype as unknown as { _batch: BatchFn };
  const original = proto._batch;
  const seen: RawOp[][] = [];
  let failNext: ((ops: RawOp[]) => boolean) | undefined;
  proto._batch = function (ops, options) {
    if (failNext?.(ops)) {
      failNext = undefined;
      return Promise.reject(Object.assign(new Error('EIO: i/o error (injected)'), { code: 'EIO' }));
    }
    seen.push(ops);
    return original.call(this, ops, options);
  };
  onTestFinished(() => {
    proto._batch = original;
  });
  return {
    seen,
    failNextWhere(pred: (ops: RawOp[]) => boolean) {
      failNext = pred;
    },
  };
}

/** The Store a daemon started in this process opens (to read it while the daemon runs). */
function captureStores(): Store[] {
  const stores: Store[] = [];
  const original = Store.open.bind(Store);
  Store.open = async (...args: Parameters<typeof Store.open>) => {
    const store = await original(...args);
    stores.push(store);
    return store;
  };
  onTestFinished(() => {
    Store.open = original;
  });
  return stores;
}

const apiOf = (s: SpawnedNode, token: string) => ({ api: `http://${s.api}`, token: async () => token }) as unknown as TestNode;

async function docVector(node: TestNode, doc: string): Promise<Vector> {
  const res = await fetch(`${node.api}/v1/docs`, { headers: { authorization: `Bearer ${await node.token()}` } });
  const body = (await res.json()) as { docs: { name: string; vector: Vector }[] };
  return body.docs.find((d) => d.name === doc)?.vector ?? {};
}

const FEED = 'AAECAwQFBgcICQoLDA0ODw' as FeedId;

/** An envelope of `origin`'s feed FEED. */
const envelope = (origin: KeyPair, doc: string, seq: number, update: Uint8Array) => signed(origin, { doc, feed: FEED, seq, update });

const entry = (o: KeyPair, name: string) => ({ name, id: o.id, publicKey: o.publicJwk, read: ['**'], write: ['**'] });

describe('an unclean stop of a node that wrote with relaxed durability', () => {
  it('starts a new feed even when the node comes back with fsync: the seqs it may have lost are never signed again', async () => {
    const { dir } = await nodeDir({ name: 'relaxed', config: { durability: 'relaxed' } });
    const identity = await readKeyFile(join(dir, 'identity.json'));
    const token = await issueApiToken(identity, { scopes: ['read:**', 'write:**'], ttlMs: 3_600_000 });
    const doc = 'relaxed/doc';
    const first = await spawnNode(dir);
    const app = appDoc();
    for (let i = 0; i < 3; i++) expect((await postUpdate(apiOf(first, token), doc, app.edit((d) => d.getMap('m').set(`k${i}`, i)))).status).toBe(200);
    const before = await docVector(apiOf(first, token), doc);
    const [oldFeed] = Object.keys(before) as FeedKey[];
    expect(before[oldFeed!]).toBe(3);
    first.child.kill('SIGKILL');
    await first.stop();
    // What a power loss leaves of a relaxed store: the last envelope (already
    // acknowledged, and possibly forwarded) never reached the disk. Written on
    // the LevelDB folder directly, so that nothing but the loss changes.
    const db = new ClassicLevel<string, Uint8Array>(join(dir, STORE_DIR), { keyEncoding: 'utf8', valueEncoding: 'view' });
    await db.batch([
      { type: 'del', key: Space.envelope + envelopeKey(doc as DocName, oldFeed!, 3) },
      { type: 'put', key: Space.vector + doc, value: new TextEncoder().encode(JSON.stringify({ [oldFeed!]: 2 })) },
    ]);
    await db.close();
    await writeFile(join(dir, 'tessera.json'), JSON.stringify({ name: 'relaxed', listen: '127.0.0.1:0', api: '127.0.0.1:0', durability: 'fsync' }));

    const second = await spawnNode(dir);
    expect((await postUpdate(apiOf(second, token), doc, app.edit((d) => d.getMap('m').set('after', true)))).status).toBe(200);
    const after = await docVector(apiOf(second, token), doc);
    // Seq 3 of the old feed may be held by a peer with other content: signing it again would fork the feed.
    expect(after[oldFeed!]).toBe(2);
    expect(Object.keys(after)).toHaveLength(2);
    expect(second.lines.some((l) => String(l.msg).includes('starting a new feed'))).toBe(true);
    await second.stop();
    const verify = await runCli(['verify', '--data', dir]);
    expect(verify.code).toBe(0);
  }, 60_000);

  it('a crash of a node that wrote with fsync keeps its feed when it comes back relaxed (nothing acknowledged was lost)', async () => {
    const { dir } = await nodeDir({ name: 'strict' });
    const identity = await readKeyFile(join(dir, 'identity.json'));
    const token = await issueApiToken(identity, { scopes: ['read:**', 'write:**'], ttlMs: 3_600_000 });
    const first = await spawnNode(dir);
    const app = appDoc();
    expect((await postUpdate(apiOf(first, token), 'strict/doc', app.edit((d) => d.getMap('m').set('a', 1)))).status).toBe(200);
    first.child.kill('SIGKILL');
    await first.stop();
    await writeFile(join(dir, 'tessera.json'), JSON.stringify({ name: 'strict', listen: '127.0.0.1:0', api: '127.0.0.1:0', durability: 'relaxed' }));
    const second = await spawnNode(dir);
    expect((await postUpdate(apiOf(second, token), 'strict/doc', app.edit((d) => d.getMap('m').set('b', 2)))).status).toBe(200);
    const vector = await docVector(apiOf(second, token), 'strict/doc');
    expect(Object.values(vector)).toEqual([2]);
    await second.stop();
  }, 60_000);
});

describe('a failed write (I/O error) of a local change', () => {
  it('does not forget a deletion acknowledged earlier that was waiting for its items', async () => {
    const io = batches();
    const node = await testNode('eio');
    const doc = 'eio/doc';
    const app = appDoc(4242);
    const items = app.edit((d) => d.getArray('a').push(['x', 'y', 'z']));
    const deletion = app.edit((d) => d.getArray('a').delete(0, 1));
    // The deletion arrives first: its item is not here yet, so it waits (durable) and is acknowledged.
    expect((await postUpdate(node, doc, deletion)).status).toBe(200);
    // The items arrive, with the waiting deletion signed along: that write fails.
    io.failNextWhere((ops) => ops.some((o) => o.type === 'put' && o.key.startsWith(Space.envelope)));
    expect((await postUpdate(node, doc, items)).status).toBe(503);
    // The app sends them again: the deletion acknowledged before must go with them.
    expect((await postUpdate(node, doc, items)).status).toBe(200);
    expect((await getDoc(node, doc)).body).toEqual({ a: ['y', 'z'] });
    expect(node.lines.some((l) => l.msg === 'store reopened after a write error')).toBe(true);
    // And after a restart, from the store alone.
    await node.daemon.stop();
    const again = await testNode('eio', {}, node.dir);
    expect((await getDoc(again, doc)).body).toEqual({ a: ['y', 'z'] });
    expect((await again.daemon.verify()).ok).toBe(true);
  });

  it('leaves the vector and the document as the store holds them: the next write takes the same seq, nothing half-applied', async () => {
    const io = batches();
    const node = await testNode('eio-seq');
    const doc = 'eio/seq';
    const app = appDoc();
    expect((await postUpdate(node, doc, app.edit((d) => d.getMap('m').set('a', 1)))).status).toBe(200);
    io.failNextWhere((ops) => ops.some((o) => o.type === 'put' && o.key.startsWith(Space.envelope)));
    const refused = app.edit((d) => d.getMap('m').set('b', 2));
    expect((await postUpdate(node, doc, refused)).status).toBe(503);
    expect((await getDoc(node, doc)).body).toEqual({ m: { a: 1 } });
    expect(Object.values(await node.daemon.docs.vector(doc as DocName))).toEqual([1]);
    expect((await postUpdate(node, doc, refused)).status).toBe(200);
    expect((await getDoc(node, doc)).body).toEqual({ m: { a: 1, b: 2 } });
    expect(Object.values(await node.daemon.docs.vector(doc as DocName))).toEqual([2]);
    expect((await node.daemon.verify()).ok).toBe(true);
  });
});

/** The first origin's base text, and a typist's document that holds it, to type after it. */
function baseAndTypist(): { base: Uint8Array; typist: Y.Doc } {
  const writer = new Y.Doc();
  writer.getText('t').insert(0, 'base:');
  const base = Y.encodeStateAsUpdate(writer);
  const typist = new Y.Doc();
  Y.applyUpdate(typist, base);
  return { base, typist };
}

describe('a store that cannot write (a full disk)', () => {
  it('still loads, for reading, a document that parked pending structs in an earlier run', async () => {
    const io = batches();
    const [first, second] = await Promise.all([generateKeyPair(), generateKeyPair()]);
    const { base, typist } = baseAndTypist();
    const sv = Y.encodeStateVector(typist);
    typist.getText('t').insert(5, 'typed after the base '.repeat(4));
    const node = await testNode('full-read', { maxPendingBytes: 16 });
    await setPeers(node, [entry(first, 'first'), entry(second, 'second')]);
    expect((await node.daemon.docs.receive(first.id as NodeId, [envelope(second, 'f/doc', 1, Y.encodeStateAsUpdate(typist, sv)), envelope(first, 'f/other', 1, base)])).accepted).toBe(2);
    expect((await node.daemon.docs.open('f/doc' as DocName)).parked).toHaveLength(1);
    await node.daemon.stop();
    const again = await testNode('full-read', {}, node.dir);
    // Loading clears what the earlier run parked: the disk refuses that write.
    io.failNextWhere((ops) => ops.some((o) => o.type === 'del' && o.key.startsWith(`${Space.parked}pending`)));
    const read = await getDoc(again, 'f/doc');
    expect(read.status).toBe(200);
    expect(read.body).toEqual({});
    // Reads go on; once the store takes writes again, the document is whole when its base arrives.
    await again.daemon.docs.receive(first.id as NodeId, [envelope(first, 'f/doc', 1, base)]);
    expect((await getDoc(again, 'f/doc')).body).toEqual({ t: typist.getText('t').toString() });
    await again.daemon.stop();
    const third = await testNode('full-read', {}, again.dir);
    expect((await getDoc(third, 'f/doc')).body).toEqual({ t: typist.getText('t').toString() });
    expect((await third.daemon.verify()).ok).toBe(true);
  });
});

describe('a document unloaded and loaded again at once', () => {
  it('its snapshot keeps the parked structs of the envelopes it covers', async () => {
    const stores = captureStores();
    const io = batches();
    const [first, second] = await Promise.all([generateKeyPair(), generateKeyPair()]);
    // The first origin writes the base text; the second types after it, in many envelopes.
    const { base, typist } = baseAndTypist();
    const typed: Uint8Array[] = [];
    for (let i = 0; i < 120; i++) {
      const sv = Y.encodeStateVector(typist);
      typist.getText('t').insert(typist.getText('t').length, `line ${i} `.repeat(3));
      typed.push(Y.encodeStateAsUpdate(typist, sv));
    }
    const node = await testNode('unload', { maxPendingBytes: 16, maxDocsInMemory: 1 });
    await setPeers(node, [entry(first, 'first'), entry(second, 'second')]);
    const docs = node.daemon.docs;
    // Relayed by the first origin before its own base: each waits, parked in the store.
    for (const [i, update] of typed.entries()) expect((await docs.receive(first.id as NodeId, [envelope(second, 'u/doc', i + 1, update)])).accepted).toBe(1);
    expect((await docs.open('u/doc' as DocName)).parked.length).toBeGreaterThan(50);
    const store = stores.at(-1)!;
    expect(await store.get(Space.snapshot, 'u/doc')).toBeUndefined();

    // Loading another document unloads this one (maxDocsInMemory 1), which writes its snapshot; it is wanted again at once.
    await docs.open('u/other' as DocName);
    await docs.open('u/doc' as DocName);
    await waitUntil(() => io.seen.some((ops) => ops.some((o) => o.type === 'put' && o.key === `${Space.snapshot}u/doc`)), { what: 'the snapshot of the unloaded document' });
    const snap = await store.get(Space.snapshot, 'u/doc');
    expect(snap).toBeDefined();
    const { vector, state } = decodeSnapshot(snap!, 'u/doc');
    expect(vector).toEqual({ [feedKey(second.id as NodeId, FEED)]: typed.length });
    // A node that loads this snapshot (after a crash, say) replays nothing of the second feed: it must hold all of it.
    const loaded = new Y.Doc();
    Y.applyUpdate(loaded, state);
    Y.applyUpdate(loaded, base);
    expect(loaded.getText('t').toString()).toBe(typist.getText('t').toString());
    // And the live document does too, once the base arrives.
    await docs.receive(first.id as NodeId, [envelope(first, 'u/doc', 1, base)]);
    expect((await getDoc(node, 'u/doc')).body).toEqual({ t: typist.getText('t').toString() });
  });
});

describe('kill -9 of a node while it writes and replicates', () => {
  const ROUNDS = 6;
  it(`${ROUNDS} rounds: no acknowledged write lost here or at the peer, no seq of its feed signed twice, verify passes`, async () => {
    const peer = await testNode('peer');
    const conflicts: unknown[] = [];
    peer.daemon.docs.on('alarm', (a) => {
      if (a.kind === 'conflicting_envelope') conflicts.push(a);
    });
    const { dir, id } = await nodeDir({ name: 'writer' });
    const identity = await readKeyFile(join(dir, 'identity.json'));
    const token = await issueApiToken(identity, { scopes: ['read:**', 'write:**'], ttlMs: 3_600_000 });
    await setPeers(peer, [{ name: 'writer', id, publicKey: identity.publicJwk, read: ['**'], write: ['**'] }]);
    await writePeers(dir, { peers: [{ name: 'peer', id: peer.id, publicKey: peer.publicKey, url: peer.url, read: ['**'], write: ['**'] }], authorities: [] });
    const doc = 'kill/doc';
    const acknowledged = new Set<string>();
    const attempted = new Set<string>();
    let n = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const writer = await spawnNode(dir);
      const api = apiOf(writer, token);
      if (round > 0) {
        const keys = Object.keys(((await getDoc(api, doc)).body.m ?? {}) as Record<string, unknown>);
        for (const k of acknowledged) expect(keys, `acknowledged ${k} survives the kill`).toContain(k);
        for (const k of keys) expect(attempted.has(k), `unwritten ${k} appeared`).toBe(true);
      }
      const app = new Y.Doc();
      const stopAfter = 10 + Math.floor(Math.random() * 40);
      let written = 0;
      let killed = false;
      await new Promise<void>((resolve) => {
        const loop = async () => {
          for (;;) {
            const key = `r${round}w${n++}`;
            attempted.add(key);
            let update: Uint8Array | undefined;
            app.once('update', (u: Uint8Array) => (update = u));
            app.getMap('m').set(key, round);
            const sent = fetch(`${api.api}/v1/docs/${encodeURIComponent(doc)}/updates`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: update });
            // Killed at a point it can observe: with a write in flight, after a number of acknowledged ones.
            if (++written === stopAfter) {
              writer.child.kill('SIGKILL');
              killed = true;
            }
            try {
              const res = await sent;
              if (res.status === 200) acknowledged.add(key);
            } catch {
              return resolve();
            }
            if (killed) return resolve();
          }
        };
        void loop();
      });
      await writer.stop();
      const verify = await runCli(['verify', '--data', dir]);
      expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    }
    const last = await spawnNode(dir);
    const keys = Object.keys(((await getDoc(apiOf(last, token), doc)).body.m ?? {}) as Record<string, unknown>);
    for (const k of acknowledged) expect(keys).toContain(k);
    // The peer ends up with every acknowledged write, and never saw two versions of one seq.
    await waitUntil(async () => {
      const m = ((await getDoc(peer, doc)).body.m ?? {}) as Record<string, unknown>;
      return [...acknowledged].every((k) => k in m);
    }, { what: 'the peer holds every acknowledged write', timeoutMs: 30_000 });
    expect(conflicts).toEqual([]);
    expect((await peer.daemon.verify()).ok).toBe(true);
    expect(acknowledged.size).toBeGreaterThan(ROUNDS);
    await last.stop();
  }, 180_000);
});

describe('a read while the store is unavailable', () => {
  it('answers 503 (retry), on GET routes as on writes, not 500', async () => {
    const stores = captureStores();
    const node = await testNode('store-gone', { maxDocsInMemory: 1 });
    expect((await postUpdate(node, 'g/one', appDoc().edit((d) => d.getText('t').insert(0, 'one')))).status).toBe(200);
    expect((await postUpdate(node, 'g/two', appDoc().edit((d) => d.getText('t').insert(0, 'two')))).status).toBe(200);
    // g/one was unloaded to make room for g/two: reading it loads it from a store that is gone.
    await stores[0]!.close();
    for (const path of ['/v1/docs/g%2Fone', '/v1/docs/g%2Fone/state', '/v1/docs/g%2Fone/authors']) {
      const res = await fetch(`${node.api}${path}`, { headers: { authorization: `Bearer ${await node.token()}` } });
      expect(res.status, path).toBe(503);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('store_unavailable');
    }
  });
});
