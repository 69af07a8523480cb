/**
 * Items put at one place (the same origin and right origin, or neither in
 * the same parent and key): Yjs places each by walking past every one placed
 * there before it. 8,192 items of one client at the start of an array, then
 * 8,192 of another (57 KB), blocked a node for 10 s. No client puts two items
 * at one place (every update Yjs writes keeps to it), and an envelope puts at
 * most 64 there (PROTOCOL.md §6.7.1); a node signs an app's more crowded
 * change as several envelopes.
 */
import { describe, expect, it } from 'vitest';
import type { DocName } from '../../src/types.js';
import { linkPair, testNode } from '../helpers/cluster.js';
import { getDoc, postUpdate } from '../helpers/docs.js';
import { mallory } from '../helpers/mallory.js';
import { envelope, newFeed } from '../helpers/raw-peer.js';
import { atStart } from '../helpers/updates.js';
import { waitUntil } from '../helpers/wait.js';

const clients = (n: number, from = 100) => Array.from({ length: n }, (_, i): [number, number] => [from + i, 1]);

describe('items at one place', () => {
  it('from a peer: one client\'s 8,192, or 65 clients\' items, are refused as forgeries and not stored; 64 clients\' are applied', async () => {
    const target = await testNode('target');
    const m = await mallory(target, [], [], { read: [], write: ['x/**'] });
    const feeds = [newFeed(), newFeed(), newFeed()];
    m.peer.offer(envelope(m.pair, { doc: 'x/one', feed: feeds[0]!, seq: 1, update: atStart([2, 8192]) }));
    m.peer.offer(envelope(m.pair, { doc: 'x/many', feed: feeds[1]!, seq: 1, update: atStart(...clients(65)) }));
    m.peer.offer(envelope(m.pair, { doc: 'x/some', feed: feeds[2]!, seq: 1, update: atStart(...clients(64)) }));
    await m.settle();
    const seq = async (doc: string, feed: string) => (await target.daemon.docs.vector(doc as DocName))[`${m.pair.id}:${feed}`];
    expect([await seq('x/one', feeds[0]!), await seq('x/many', feeds[1]!), await seq('x/some', feeds[2]!)]).toEqual([undefined, undefined, 1]);
    expect(target.lines.filter((l) => l.msg === 'envelope refused' && l.reason === 'forgery').map((l) => l.detail)).toEqual(
      expect.arrayContaining([expect.stringContaining('puts two items at one place'), expect.stringContaining('more than 64 items at one place')]),
    );
    expect(((await getDoc(target, 'x/some')).body.a as number[]).length).toBe(64);
  });

  it('from an app: one client\'s two items at one place are a 400; 100 clients\' (a merged state) are signed as two envelopes that a peer applies', async () => {
    const a = await testNode('a');
    const b = await testNode('b');
    await linkPair(a, b);
    const bad = await postUpdate(a, 'crowd/doc', atStart([2, 2]));
    expect([bad.status, (bad.body.error as { code: string }).code]).toEqual([400, 'bad_update']);
    expect((await postUpdate(a, 'crowd/doc', atStart(...clients(100)))).status).toBe(200);
    const own = a.daemon.docs.ownFeed;
    expect((await a.daemon.docs.vector('crowd/doc' as DocName))[own]).toBe(2);
    await waitUntil(async () => (await b.daemon.docs.vector('crowd/doc' as DocName))[own] === 2, { what: 'b holds both envelopes' });
    const onB = (await getDoc(b, 'crowd/doc')).body.a as number[];
    expect([...onB].sort((x, y) => x - y)).toEqual(Array.from({ length: 100 }, (_, i) => 100 + i));
    expect((await getDoc(a, 'crowd/doc')).body.a).toEqual(onB);
  });
});
