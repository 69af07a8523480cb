/**
 * Pending structs (DESIGN.md §2, §9): structs that wait for content this node
 * does not hold stay in memory up to maxPendingBytes per document; beyond it
 * they are parked in the store, keyed by what they wait for, counted in
 * /v1/status, and brought back as soon as it arrives, across restarts too.
 */
import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { generateKeyPair, type KeyPair } from '../../src/identity/keys.js';
import { signEnvelope, updateHash } from '../../src/sync/envelope.js';
import { parseUpdate, structRanges } from '../../src/yjs/parse.js';
import type { DocName, FeedId, NodeId } from '../../src/types.js';
import { setPeers, status, testNode } from '../helpers/cluster.js';
import { getDoc } from '../helpers/docs.js';
import { withStore } from '../helpers/node.js';
import { envelopeOps } from '../../src/store/records.js';
import { Space } from '../../src/store/store.js';
import { feedKey } from '../../src/types.js';
import { deletions as deletionsOf } from '../helpers/updates.js';

const FEED = 'AAECAwQFBgcICQoLDA0ODw' as FeedId;

function envelope(origin: KeyPair, doc: string, seq: number, update: Uint8Array) {
  const claims = { iss: origin.id, doc: doc as DocName, feed: FEED, seq, h: updateHash(update), clients: structRanges(parseUpdate(update).structs), iat: Math.floor(Date.now() / 1000) };
  return { token: signEnvelope(claims, origin.privateKey), update };
}

const entry = (o: KeyPair, name: string) => ({ name, id: o.id, publicKey: o.publicJwk, read: ['**'], write: ['**'] });

describe('pending structs beyond maxPendingBytes', () => {
  it('are parked in the store, counted, kept across a restart, and brought back when what they wait for arrives', async () => {
    const [first, second] = await Promise.all([generateKeyPair(), generateKeyPair()]);
    // The first origin writes the base text; the second types 300 characters after it.
    const writer = new Y.Doc();
    writer.getText('t').insert(0, 'base:');
    const base = Y.encodeStateAsUpdate(writer);
    const sv = Y.encodeStateVector(writer);
    const typist = new Y.Doc();
    Y.applyUpdate(typist, base);
    for (let i = 0; i < 300; i++) typist.getText('t').insert(typist.getText('t').length, String.fromCharCode(97 + (i % 26)));
    const typed = Y.encodeStateAsUpdate(typist, sv);

    const node = await testNode('parks', { maxPendingBytes: 64 });
    await setPeers(node, [entry(first, 'first'), entry(second, 'second')]);
    // The second origin's envelope arrives first (relayed by the first): it cannot be applied yet.
    const out = await node.daemon.docs.receive(first.id as NodeId, [envelope(second, 'p/doc', 1, typed)]);
    expect(out.accepted).toBe(1);
    const live = await node.daemon.docs.open('p/doc' as DocName);
    expect(live.ydoc.store.pendingStructs).toBeNull();
    expect(live.parked).toHaveLength(1);
    expect((await status(node)).pending).toBe(300);
    expect((await getDoc(node, 'p/doc')).body).toEqual({});

    // A restart: the document loads again from its envelopes and parks them again.
    await node.daemon.stop();
    const again = await testNode('parks', {}, node.dir);
    const reloaded = await again.daemon.docs.open('p/doc' as DocName);
    expect(reloaded.parked).toHaveLength(1);
    expect(reloaded.ydoc.store.pendingStructs).toBeNull();

    // What they wait for arrives: they come back and are applied; nothing stays parked.
    await again.daemon.docs.receive(first.id as NodeId, [envelope(first, 'p/doc', 1, base)]);
    expect((await getDoc(again, 'p/doc')).body).toEqual({ t: typist.getText('t').toString() });
    expect(reloaded.parked).toHaveLength(0);
    expect((await status(again)).pending).toBe(0);

    // And the document is the one a node that got them in order holds.
    const inOrder = await testNode('in-order');
    await setPeers(inOrder, [entry(first, 'first'), entry(second, 'second')]);
    await inOrder.daemon.docs.receive(first.id as NodeId, [envelope(first, 'p/doc', 1, base), envelope(second, 'p/doc', 1, typed)]);
    expect(await again.daemon.docs.digest('p/doc' as DocName)).toBe(await inOrder.daemon.docs.digest('p/doc' as DocName));
  });

  it('a stored envelope that Yjs cannot apply does not make its document unloadable', async () => {
    const origin = await generateKeyPair();
    const writer = new Y.Doc();
    writer.getText('t').insert(0, 'hello');
    const node = await testNode('poisoned');
    await setPeers(node, [entry(origin, 'origin')]);
    expect((await node.daemon.docs.receive(origin.id as NodeId, [envelope(origin, 'p/poison', 1, Y.encodeStateAsUpdate(writer))])).accepted).toBe(1);
    await node.daemon.stop();
    // What a store written by an older or faulty node could hold: a struct whose origin is its own
    // client at a later clock (the parser refuses it today; Yjs throws applying it).
    const poison = Buffer.from('01014d00844d05017800', 'hex');
    const feed = feedKey(origin.id as NodeId, FEED);
    // Signed as it is (its token names its hash): a record that is intact, only not applicable.
    const claims = { iss: origin.id, doc: 'p/poison' as DocName, feed: FEED, seq: 2, h: updateHash(poison), clients: [[77, 0, 6]] as [number, number, number][], iat: Math.floor(Date.now() / 1000) };
    const env = { doc: 'p/poison' as DocName, feed, seq: 2, token: signEnvelope(claims, origin.privateKey), update: new Uint8Array(poison) };
    await withStore(node.dir, (store) => store.write([...envelopeOps([env], new Map([['p/poison' as DocName, { [feed]: 2 }]])), { type: 'del', space: Space.snapshot, key: 'p/poison' }]));
    const again = await testNode('poisoned', {}, node.dir);
    expect((await getDoc(again, 'p/poison')).body).toEqual({ t: 'hello' });
    expect(again.lines.some((l) => l.msg === 'applying a stored update failed')).toBe(true);
  });

  it('deletions of items not held yet are parked the same way beyond maxPendingBytes, and applied when the items arrive', async () => {
    const [first, second] = await Promise.all([generateKeyPair(), generateKeyPair()]);
    // The first origin types 2000 characters one by one; the second deletes every other one.
    const writer = new Y.Doc();
    for (let i = 0; i < 2000; i++) writer.getText('t').insert(i, String.fromCharCode(97 + (i % 26)));
    const typed = Y.encodeStateAsUpdate(writer);
    const deleter = new Y.Doc();
    Y.applyUpdate(deleter, typed);
    const sv = Y.encodeStateVector(deleter);
    deleter.transact(() => {
      for (let i = 1999; i >= 0; i -= 2) deleter.getText('t').delete(i, 1);
    });
    const deletions = Y.encodeStateAsUpdate(deleter, sv);

    const node = await testNode('parks-deletions', { maxPendingBytes: 64 });
    await setPeers(node, [entry(first, 'first'), entry(second, 'second')]);
    // The deletions arrive first: Yjs would keep them in memory, retried at every update, with no bound.
    expect((await node.daemon.docs.receive(first.id as NodeId, [envelope(second, 'p/dels', 1, deletions)])).accepted).toBe(1);
    const live = await node.daemon.docs.open('p/dels' as DocName);
    expect(live.ydoc.store.pendingDs).toBeNull();
    expect(live.parked).toHaveLength(1);
    expect(node.lines.some((l) => String(l.msg).includes('parked') && l.doc === 'p/dels')).toBe(true);

    // Across a restart too.
    await node.daemon.stop();
    const again = await testNode('parks-deletions', {}, node.dir);
    const reloaded = await again.daemon.docs.open('p/dels' as DocName);
    expect(reloaded.ydoc.store.pendingDs).toBeNull();
    expect(reloaded.parked).toHaveLength(1);

    // The items arrive: the deletions come back and apply; the node holds what the deleter holds.
    await again.daemon.docs.receive(first.id as NodeId, [envelope(first, 'p/dels', 1, typed)]);
    expect((await getDoc(again, 'p/dels')).body).toEqual({ t: deleter.getText('t').toString() });
    expect(reloaded.parked).toHaveLength(0);
    expect(reloaded.ydoc.store.pendingDs).toBeNull();
    const inOrder = await testNode('deletions-in-order');
    await setPeers(inOrder, [entry(first, 'first'), entry(second, 'second')]);
    await inOrder.daemon.docs.receive(first.id as NodeId, [envelope(first, 'p/dels', 1, typed), envelope(second, 'p/dels', 1, deletions)]);
    expect(await again.daemon.docs.digest('p/dels' as DocName)).toBe(await inOrder.daemon.docs.digest('p/dels' as DocName));
  });

  it('with the default maxPendingBytes, deletions waiting for their items are held to 16 KiB in memory, within a batch too (Yjs reads them all again at every update)', async () => {
    const [first, second] = await Promise.all([generateKeyPair(), generateKeyPair()]);
    const node = await testNode('holds-deletions');
    await setPeers(node, [entry(first, 'first'), entry(second, 'second')]);
    // Eight envelopes of 8,192 one-clock deletions each of a client the node does not hold (about 16 KiB each when waiting), in one batch.
    const waiting = Array.from({ length: 8 }, (_, e) => envelope(second, 'p/waits', e + 1, deletionsOf(77, Array.from({ length: 8192 }, (_, i) => [2 * (e * 8192 + i), 1]))));
    const seen: number[] = [];
    const live = await node.daemon.docs.open('p/waits' as DocName);
    live.ydoc.on('afterTransaction', () => seen.push(live.ydoc.store.pendingDs?.byteLength ?? 0));
    expect((await node.daemon.docs.receive(first.id as NodeId, waiting)).accepted).toBe(8);
    expect(Math.max(...seen)).toBeLessThan(48 * 1024);
    expect(live.ydoc.store.pendingDs?.byteLength ?? 0).toBeLessThanOrEqual(16 * 1024);
    expect(live.parked.length).toBeGreaterThan(0);
  });
});
