/**
 * Updates that make Yjs cut one long item at thousands of places. Yjs cuts
 * in the order an update lists the places, copying the rest of the item at
 * each cut: 8,192 one-value deletions (about 30 KB) across an array item of
 * a million numbers took 46 s to apply, on every node, from anyone who may
 * write the document; 20,000 values put inside an item of 200,000 that the
 * same update carries ran the process out of memory. Pieces of a cut item
 * share its values (src/yjs/content-runs.ts), and the cuts into items a
 * document holds are made in one pass (src/yjs/cuts.ts).
 */
import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import type { DocName } from '../../src/types.js';
import { testNode } from '../helpers/cluster.js';
import { getDoc } from '../helpers/docs.js';
import { mallory } from '../helpers/mallory.js';
import { envelope, newFeed } from '../helpers/raw-peer.js';
import { deletions, valuesInside } from '../helpers/updates.js';

const MILLION = 1_000_000;

describe('updates that cut one item at thousands of places', () => {
  it('from a peer: a million values in one item, then 8,192 deletions across it: applied, in well under the time Yjs alone takes', async () => {
    const target = await testNode('target');
    const m = await mallory(target, [], [], { read: [], write: ['x/**'] });
    const feed = newFeed();
    const app = new Y.Doc();
    app.clientID = 5;
    app.getArray('a').push(Array.from({ length: MILLION }, (_, i) => i % 100));
    m.peer.offer(envelope(m.pair, { doc: 'x/long', feed, seq: 1, update: Y.encodeStateAsUpdate(app) }));
    m.peer.offer(envelope(m.pair, { doc: 'x/long', feed, seq: 2, update: deletions(5, Array.from({ length: 8192 }, (_, i) => [i * 122, 1])) }));
    await m.settle();
    expect((await target.daemon.docs.vector('x/long' as DocName))[`${m.pair.id}:${feed}`]).toBe(2);
    const read = await getDoc(target, 'x/long');
    expect(read.status).toBe(200);
    const want = Array.from({ length: MILLION }, (_, i) => i % 100).filter((_, i) => i % 122 !== 0 || i >= 8192 * 122);
    expect(read.body.a).toEqual(want);
  }, 30_000);

  it('from a peer: 20,000 values put inside an item of 200,000 that the same envelope carries: applied (Yjs alone ran out of memory)', async () => {
    const target = await testNode('target');
    const m = await mallory(target, [], [], { read: [], write: ['x/**'] });
    const feed = newFeed();
    m.peer.offer(envelope(m.pair, { doc: 'x/inside', feed, seq: 1, update: valuesInside(200_000, 20_000) }));
    await m.settle();
    expect((await target.daemon.docs.vector('x/inside' as DocName))[`${m.pair.id}:${feed}`]).toBe(1);
    const values = (await getDoc(target, 'x/inside')).body.a as number[];
    expect([values.length, values.filter((v) => v === -1).length]).toEqual([220_000, 20_000]);
  }, 30_000);
});
