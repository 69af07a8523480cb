/**
 * Envelopes that arrive ahead of a gap in their feed are held in memory
 * until the gap fills. A listed writer that signs seq 2.. of feeds whose
 * seq 1 it never sends must not be able to pin documents in memory (with
 * maxDocsInMemory of them pinned, every other document used to be dead on
 * the node) or hold bytes beyond maxHeldBytes; and documents all in use must
 * not stop another from opening.
 */
import { describe, expect, it } from 'vitest';
import type { DocName } from '../../src/types.js';
import { entryFor, peerState, setPeers, testNode } from '../helpers/cluster.js';
import { appDoc, getDoc, postUpdate } from '../helpers/docs.js';
import { write } from '../helpers/authority.js';
import { bigText, mallory } from '../helpers/mallory.js';
import { envelope, newFeed, yUpdate } from '../helpers/raw-peer.js';
import { waitUntil } from '../helpers/wait.js';

const MAX = 20;

describe('envelopes held ahead of a gap', () => {
  it(`held on more than maxDocsInMemory (${MAX}) documents, they pin none: honest replication and local writes go on`, async () => {
    const target = await testNode('target', { maxDocsInMemory: MAX });
    const honest = await testNode('honest');
    await setPeers(honest, [entryFor(target, { dial: false })]);
    const m = await mallory(target, [entryFor(honest)], [], { read: [], write: ['p/**'] });
    await waitUntil(async () => (await peerState(target, honest)) === 'connected', { what: 'honest link' });
    // One small envelope per document, each seq 2 of its own feed: seq 1 never comes.
    m.peer.offer(...Array.from({ length: MAX + 5 }, (_, i) => envelope(m.pair, { doc: `p/${i}`, feed: newFeed(), seq: 2, update: yUpdate(7000 + i, (d) => d.getMap('m').set('k', i)) })));
    await m.settle();

    await write(honest, 'honest/doc', (d) => d.getMap('m').set('k', 'honest'));
    await waitUntil(async () => (await getDoc(target, 'honest/doc')).status === 200, { what: 'the honest write applied' });
    expect((await postUpdate(target, 'other/doc', appDoc().edit((d) => d.getMap('m').set('k', 'local')))).status).toBe(200);
    expect(target.daemon.docs.loadedCount).toBeLessThanOrEqual(MAX + 1);
  }, 60_000);

  it('maxHeldBytes bounds what is held, all documents together, and the sender stays connected', async () => {
    const target = await testNode('target', { maxHeldBytes: 4 * 1024 * 1024 });
    const m = await mallory(target, [], [], { read: [], write: ['h/**'] });
    const update = bigText(4242, 512 * 1024);
    const feeds = [newFeed(), newFeed(), newFeed()];
    for (const [d, feed] of feeds.entries()) {
      for (let seq = 2; seq < 12; seq++) m.peer.offer(envelope(m.pair, { doc: `h/d${d}`, feed, seq, update }));
    }
    await m.settle();
    let held = 0;
    for (let d = 0; d < feeds.length; d++) {
      const live = await target.daemon.docs.open(`h/d${d}` as DocName);
      held += live.heldBytes;
    }
    expect(held).toBeGreaterThan(0);
    expect(held).toBeLessThanOrEqual(4 * 1024 * 1024);
    expect(m.peer.isOpen).toBe(true);
  }, 60_000);

  it('documents held only by their envelopes leave memory when idle, and the envelopes with them', async () => {
    const target = await testNode('target', { docIdleTimeout: '1s' });
    const m = await mallory(target, [], [], { read: [], write: ['h/**'] });
    m.peer.offer(envelope(m.pair, { doc: 'h/idle', feed: newFeed(), seq: 2, update: yUpdate(4343, (d) => d.getMap('m').set('k', 1)) }));
    await m.settle();
    await waitUntil(() => target.daemon.docs.loadedCount <= 1, { what: 'the document unloaded by the idle sweep', timeoutMs: 20_000 });
    expect((await target.daemon.docs.open('h/idle' as DocName)).heldCount).toBe(0);
  }, 60_000);

  it('when every loaded document is in use, one more still opens (the bound gives way for a while)', async () => {
    const target = await testNode('target', { maxDocsInMemory: 3 });
    for (const doc of ['u/1', 'u/2', 'u/3']) await target.daemon.docs.acquire(doc as DocName);
    expect((await postUpdate(target, 'u/4', appDoc().edit((d) => d.getMap('m').set('k', 4)))).status).toBe(200);
  }, 30_000);
});
