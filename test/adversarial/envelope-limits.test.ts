/**
 * What one envelope may carry (PROTOCOL.md §6.7.1, ENVELOPE_LIMITS): 65,536
 * structs and 65,536 delete ranges. Reading and applying 8 MiB of two-byte
 * structs took a node seconds of blocking work and gigabytes of memory; an
 * envelope past the limits is a forgery, refused on the declared counts
 * before a struct is read. A node splits a larger change from an app into
 * several envelopes, which its peers take.
 */
import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { ENVELOPE_LIMITS } from '../../src/sync/envelope.js';
import type { DocName } from '../../src/types.js';
import { linkPair, testNode } from '../helpers/cluster.js';
import { appDoc, getDoc, postUpdate } from '../helpers/docs.js';
import { mallory } from '../helpers/mallory.js';
import { envelope, newFeed } from '../helpers/raw-peer.js';
import { deletions, gcStructs } from '../helpers/updates.js';
import { waitUntil } from '../helpers/wait.js';

const every = (n: number, from: number): [number, number][] => Array.from({ length: n }, (_, i) => [from + 2 * i, 1]);

describe('envelope limits', () => {
  it('from a peer: one struct or delete range past the limits is refused; at the limits, applied', async () => {
    const target = await testNode('target');
    const m = await mallory(target, [], [], { read: [], write: ['x/**'] });
    const feeds = { structs: newFeed(), structsAt: newFeed(), deletes: newFeed(), deletesAt: newFeed() };
    const { structs, deleteRanges } = ENVELOPE_LIMITS;
    m.peer.offer(envelope(m.pair, { doc: 'x/a', feed: feeds.structs, seq: 1, update: gcStructs(structs + 1, 501) }));
    m.peer.offer(envelope(m.pair, { doc: 'x/b', feed: feeds.structsAt, seq: 1, update: gcStructs(structs, 502) }));
    m.peer.offer(envelope(m.pair, { doc: 'x/c', feed: feeds.deletes, seq: 1, update: deletions(503, every(deleteRanges + 1, 0)) }));
    m.peer.offer(envelope(m.pair, { doc: 'x/d', feed: feeds.deletesAt, seq: 1, update: deletions(504, every(deleteRanges, 0)) }));
    await m.settle();
    const seqOf = async (doc: string, feed: string) => (await target.daemon.docs.vector(doc as DocName))[`${m.pair.id}:${feed}`];
    // Documents are taken up side by side: the marker of settle() may be in before these.
    await waitUntil(async () => (await seqOf('x/b', feeds.structsAt)) === 1 && (await seqOf('x/d', feeds.deletesAt)) === 1, { what: 'the envelopes at the limits applied' });
    await waitUntil(() => target.lines.filter((l) => l.msg === 'envelope refused').length === 2, { what: 'the two past the limits refused' });
    expect([await seqOf('x/a', feeds.structs), await seqOf('x/c', feeds.deletes)]).toEqual([undefined, undefined]);
    expect((await getDoc(target, 'x/b')).status).toBe(200);
    expect((await target.daemon.verify()).ok).toBe(true);
  }, 60_000);

  it('from an app: a change past the limits is signed in several envelopes, and the peer applies them all', async () => {
    const a = await testNode('a');
    const b = await testNode('b');
    await linkPair(a, b);
    const doc = 'big/doc';
    const app = appDoc(5);
    // 70,000 map entries: as many structs (entries never join).
    const entries = app.edit((d) => {
      const m = d.getMap('m');
      for (let i = 0; i < 70_000; i++) m.set(`k${i}`, i);
    });
    expect((await postUpdate(a, doc, entries)).status).toBe(200);
    // 140,000 numbers in one struct, then every other one deleted: 70,000 delete ranges.
    expect((await postUpdate(a, doc, app.edit((d) => d.getArray('a').push(Array.from({ length: 140_000 }, (_, i) => i))))).status).toBe(200);
    const clock = Y.getState(app.doc.store, 5) - 140_000;
    expect((await postUpdate(a, doc, deletions(5, every(70_000, clock)))).status).toBe(200);

    const own = a.daemon.docs.ownFeed;
    // Two envelopes for the entries, one for the numbers, two for the deletions.
    expect((await a.daemon.docs.vector(doc as DocName))[own]).toBe(5);
    await waitUntil(async () => (await b.daemon.docs.vector(doc as DocName))[own] === 5, { what: 'b holds all five envelopes', timeoutMs: 30_000 });
    const [onA, onB] = [(await getDoc(a, doc)).body, (await getDoc(b, doc)).body];
    expect({ entries: Object.keys(onB.m as object).length, numbers: (onB.a as number[]).length, odd: (onB.a as number[]).every((n) => n % 2 === 1) }).toEqual({ entries: 70_000, numbers: 70_000, odd: true });
    expect(onB).toEqual(onA);
  }, 90_000);
});
