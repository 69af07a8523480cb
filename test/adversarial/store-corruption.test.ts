/**
 * Records read back from a stopped node's LevelDB folder that are not what
 * the node wrote there (a value truncated, emptied or overwritten), written
 * through the Store API as a damaged disk would leave them. The node starts
 * (or refuses to, saying which record), refuses only the document whose
 * record is damaged, naming the record in its log, and never serves that
 * document as something else or signs over what it already signed.
 */
import { join } from 'node:path';
import { Level } from 'level';
import { describe, expect, it } from 'vitest';
import { STORE_DIR } from '../../src/init.js';
import { Space, type Store } from '../../src/store/store.js';
import { readFeed } from '../../src/store/records.js';
import type { DocName, FeedKey, NodeId } from '../../src/types.js';
import { linkPair, setPeers, testNode, type TestNode } from '../helpers/cluster.js';
import { authority, revocationOf, writeGrants } from '../helpers/authority.js';
import { randomId } from '../helpers/junk.js';
import { waitUntil } from '../helpers/wait.js';
import { appDoc, getDoc, postUpdate } from '../helpers/docs.js';
import { withStore } from '../helpers/node.js';

const DOC = 'c/doc' as DocName;

/**
 * A stopped node that wrote three edits to c/doc and one to c/other, with
 * no snapshot of c/doc (so that loading it reads its vector and replays its
 * envelopes), and its own feed key.
 */
async function stoppedNode(): Promise<{ dir: string; feed: FeedKey }> {
  const node = await testNode('c');
  const app = appDoc(5);
  for (const s of ['one ', 'two ', 'three']) expect((await postUpdate(node, DOC, app.edit((d) => d.getText('t').insert(d.getText('t').length, s)))).status).toBe(200);
  expect((await postUpdate(node, 'c/other', appDoc(6).edit((d) => d.getMap('m').set('ok', true)))).status).toBe(200);
  const feed = Object.keys(await node.daemon.docs.vector(DOC))[0] as FeedKey;
  await node.daemon.stop();
  await withStore(node.dir, (store) => store.write([{ type: 'del', space: Space.snapshot, key: DOC }]));
  return { dir: node.dir, feed };
}

const put = (space: Space, key: string, value: string | Uint8Array) => (store: Store) =>
  store.write([{ type: 'put', space, key, value: typeof value === 'string' ? new TextEncoder().encode(value) : value }]);

/** The tokens of a feed's envelopes of c/doc, as stored. */
async function tokens(dir: string, feed: FeedKey): Promise<string[]> {
  return withStore(dir, async (store) => {
    const out: string[] = [];
    for await (const env of readFeed(store, DOC, feed)) out.push(env.token);
    return out;
  });
}

/** Warnings and errors the node logged that name a corrupt record. */
const corruptLines = (node: TestNode) => node.lines.filter((l) => Number(l.level) >= 40 && JSON.stringify(l).includes('corrupt record in the store'));

/** A new peer linked to `node` gets c/other and seq 1 of c/doc, never the damaged seq 2: nothing counted as a forgery, and the session stays. */
async function expectSentUpToDamage(node: TestNode, feed: FeedKey): Promise<void> {
  const peer = await testNode('p');
  await linkPair(node, peer);
  await waitUntil(async () => (await getDoc(peer, 'c/other')).status === 200, { what: 'the peer has c/other' });
  await waitUntil(() => node.lines.some((l) => String(l.msg).startsWith('a stored envelope is damaged')), { what: 'the node passed over the damaged envelope' });
  expect(await peer.daemon.docs.vector(DOC)).toEqual({ [feed]: 1 });
  expect(peer.lines.some((l) => l.msg === 'envelope refused' && l.reason === 'forgery')).toBe(false);
  expect(node.daemon.peerManager.session(peer.id as NodeId)?.closed).toBe(false);
}

describe('a damaged vector record', () => {
  for (const [what, value] of [
    ['valid JSON, not a vector', '{"x":1}'],
    ['null', 'null'],
    ['truncated', '{"abc:de'],
  ] as const) {
    it(`${what}: the document is refused (503, its log names the record); nothing is signed over; other documents are served`, async () => {
      const { dir, feed } = await stoppedNode();
      const before = await tokens(dir, feed);
      await withStore(dir, put(Space.vector, DOC, value));
      const node = await testNode('c', {}, dir);
      // Before: a 200 with an empty document, and a write signed as seq 1 of its own feed again, over the envelope held there.
      expect((await getDoc(node, DOC)).status).toBe(503);
      expect((await postUpdate(node, DOC, appDoc(9).edit((d) => d.getMap('m').set('x', 1)))).status).toBe(503);
      expect((await getDoc(node, 'c/other')).body).toEqual({ m: { ok: true } });
      expect((await postUpdate(node, 'c/other', appDoc(9).edit((d) => d.getMap('m').set('x', 1)))).status).toBe(200);
      const message = `corrupt record in the store (v "c/doc"): ${what === 'truncated' ? 'not valid JSON (Unterminated string in JSON at position 8)' : 'not a version vector'}`;
      expect(corruptLines(node).map((l) => (l.err as { message: string }).message)).toContain(message);
      // verify lists it with the rest instead of failing.
      const report = await node.daemon.verify();
      expect(report.ok).toBe(false);
      expect(report.problems).toEqual([{ doc: DOC, feed: '', seq: null, problem: message }]);
      await node.daemon.stop();
      expect(await tokens(dir, feed)).toEqual(before);
    });
  }
});

describe('a damaged snapshot', () => {
  for (const [what, value] of [
    ['garbage bytes', new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9])],
    ['a vector that is not one', new Uint8Array([...new TextEncoder().encode('\u0004null'), 0, 0])],
    ['its state changed on disk, still a valid Yjs update', 'flip'],
  ] as const) {
    it(`${what}: passed over, the document replayed from its envelopes and served whole`, async () => {
      const { dir } = await stoppedNode();
      const had = await withStore(dir, (store) => store.get(Space.snapshot, 'c/other'));
      expect(had, 'the stop wrote a snapshot of c/other').toBeDefined();
      if (value === 'flip') {
        // "ok": true stored as "ok": false (the Any tag 120 for true becomes 121): the same length, as valid to Yjs.
        const changed = new Uint8Array(had!);
        changed[changed.lastIndexOf(120)] = 121;
        await withStore(dir, put(Space.snapshot, 'c/other', changed));
      } else await withStore(dir, put(Space.snapshot, 'c/other', value));
      const node = await testNode('c', {}, dir);
      expect((await getDoc(node, 'c/other')).body).toEqual({ m: { ok: true } });
      expect(node.lines.some((l) => l.msg === 'damaged snapshot passed over; replaying the document from its envelopes' && l.doc === 'c/other')).toBe(true);
      expect((await postUpdate(node, 'c/other', appDoc(9).edit((d) => d.getMap('m').set('x', 1)))).status).toBe(200);
      expect((await node.daemon.verify()).ok).toBe(true);
    });
  }
});

describe('a damaged record and replication', () => {
  it('the document is left out of the exchange with a peer; the others replicate both ways, and the session stays', async () => {
    const { dir } = await stoppedNode();
    await withStore(dir, put(Space.vector, DOC, 'null'));
    const node = await testNode('c', {}, dir);
    const peer = await testNode('p');
    // The peer holds c/doc too, so it announces it and pushes to it.
    expect((await postUpdate(peer, DOC, appDoc(11).edit((d) => d.getMap('m').set('from', 'peer')))).status).toBe(200);
    await linkPair(node, peer);
    await waitUntil(async () => (await getDoc(peer, 'c/other')).status === 200, { what: 'the peer has c/other' });
    expect((await postUpdate(peer, 'p/new', appDoc(12).edit((d) => d.getMap('m').set('ok', 1)))).status).toBe(200);
    await waitUntil(async () => (await getDoc(node, 'p/new')).status === 200, { what: 'the node has p/new' });
    expect(node.lines.some((l) => l.msg === 'sync message handling failed')).toBe(false);
    expect(node.lines.some((l) => String(l.msg).startsWith('document left out of replication') || String(l.msg).startsWith('envelopes not taken in'))).toBe(true);
    expect(node.daemon.peerManager.session(peer.id as NodeId)?.closed).toBe(false);
  });
});

describe('a damaged record and a rebuild', () => {
  it('the rebuild after a revocation goes on past the damaged document, and the next start serves', async () => {
    const { dir } = await stoppedNode();
    await withStore(dir, put(Space.vector, DOC, 'null'));
    const admin = await authority();
    const node = await testNode('c', {}, dir);
    await setPeers(node, [], [admin.entry]);
    // A revocation binding here: every document is looked at.
    await writeGrants(node, [], [await revocationOf(admin, { id: randomId() })]);
    await waitUntil(() => node.lines.some((l) => String(l.msg).startsWith('document left out of the rebuild')), { what: 'the rebuild passed over c/doc' });
    expect(node.lines.some((l) => String(l.msg).startsWith('applying a revocation change failed'))).toBe(false);
    await node.daemon.stop();
    // Whether or not the rebuild had finished, the next start (which resumes an unfinished one) serves.
    const again = await testNode('c', {}, dir);
    expect((await getDoc(again, 'c/other')).body).toEqual({ m: { ok: true } });
    expect((await getDoc(again, DOC)).status).toBe(503);
  });
});

describe('a damaged envelope record', () => {
  it('an emptied value: verify reports it with the rest, instead of failing', async () => {
    const { dir, feed } = await stoppedNode();
    const key = `${DOC}\u0000${feed}\u0000${(2).toString(16).padStart(12, '0')}`;
    await withStore(dir, put(Space.envelope, key, new Uint8Array(0)));
    const node = await testNode('c', {}, dir);
    const report = await node.daemon.verify();
    expect(report.ok).toBe(false);
    expect(report.envelopes).toBe(4);
    expect(report.problems).toEqual([{ doc: DOC, feed, seq: 2, problem: expect.any(String) }]);
  });

  it('an emptied value: the document is refused (503), not served without it, and a peer is sent what comes before it, never it', async () => {
    const { dir, feed } = await stoppedNode();
    const key = `${DOC}\u0000${feed}\u0000${(2).toString(16).padStart(12, '0')}`;
    await withStore(dir, put(Space.envelope, key, new Uint8Array(0)));
    const node = await testNode('c', {}, dir);
    expect((await getDoc(node, DOC)).status).toBe(503);
    await expectSentUpToDamage(node, feed);
  });
});

describe('an envelope whose update is damaged but still decodes', () => {
  /** The stopped node of stoppedNode, its seq 2 ("two ") stored as "twX ": a Yjs update as valid as before, not the one its token names. */
  async function damagedUpdate() {
    const { dir, feed } = await stoppedNode();
    const key = `${DOC}\u0000${feed}\u0000${(2).toString(16).padStart(12, '0')}`;
    await withStore(dir, async (store) => {
      const value = new Uint8Array((await store.get(Space.envelope, key))!);
      const at = Buffer.from(value).lastIndexOf('two ');
      expect(at).toBeGreaterThan(0);
      value[at + 2] = 'X'.charCodeAt(0);
      await store.write([{ type: 'put', space: Space.envelope, key, value }]);
    });
    return { dir, feed };
  }

  it('the document is refused (503), not served with other content; verify names it', async () => {
    const { dir, feed } = await damagedUpdate();
    const node = await testNode('c', {}, dir);
    expect((await getDoc(node, DOC)).status).toBe(503);
    expect((await getDoc(node, 'c/other')).status).toBe(200);
    expect((await node.daemon.verify()).problems).toEqual([{ doc: DOC, feed, seq: 2, problem: 'h does not match the update bytes' }]);
  });

  it('a peer is sent what comes before it, never it: no forgery counted against the node, and the session stays', async () => {
    const { dir, feed } = await damagedUpdate();
    const node = await testNode('c', {}, dir);
    await expectSentUpToDamage(node, feed);
  });
});

describe('a damaged record of the node itself', () => {
  for (const [what, key, value] of [
    ['the feed, truncated', 'feed', '"abc'],
    ['the feed, not a feed id', 'feed', '{"x":1}'],
    ['the last run, not JSON', 'running', 'tru'],
  ] as const) {
    it(`${what}: the node starts on a new feed and says so; what it writes then verifies`, async () => {
      const { dir, feed } = await stoppedNode();
      // Not through the Store: closing it writes the record of its run.
      const db = new Level<string, string>(join(dir, STORE_DIR));
      await db.put(Space.meta + key, value);
      await db.close();
      // Before: a start that failed on a bare SyntaxError, or envelopes signed under the feed "[object Object]".
      const node = await testNode('c', {}, dir);
      expect(node.lines.some((l) => Number(l.level) >= 50 && String(l.msg).includes('corrupt: starting a new feed'))).toBe(true);
      expect((await postUpdate(node, DOC, appDoc(9).edit((d) => d.getMap('m').set('x', 1)))).status).toBe(200);
      const vector = await node.daemon.docs.vector(DOC);
      expect(vector[feed]).toBe(3);
      expect(Object.entries(vector).filter(([f]) => f !== feed)).toEqual([[expect.stringMatching(/^[^:]+:[A-Za-z0-9_-]{22}$/), 1]]);
      expect((await getDoc(node, DOC)).body).toEqual({ t: 'one two three', m: { x: 1 } });
      expect(await node.daemon.verify()).toMatchObject({ ok: true, envelopes: 5 });
    });
  }

  it('a record the node cannot start without (the revocations it applied): start refuses, naming the record', async () => {
    const { dir } = await stoppedNode();
    await withStore(dir, put(Space.meta, 'revocations', '{"fingerprint":'));
    const err = await testNode('c', {}, dir).then(
      () => undefined,
      (e: unknown) => e as { code?: string; message?: string },
    );
    expect(err?.code).toBe('ERR_STORE_CORRUPT');
    expect(err?.message).toMatch(/^corrupt record in the store \(m "revocations"\): not valid JSON/);
  });
});
