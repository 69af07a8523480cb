/**
 * What one envelope may carry (PROTOCOL.md §6.7.1, ENVELOPE_LIMITS): 65,536
 * structs and 65,536 delete ranges. Reading and applying 8 MiB of two-byte
 * structs took a node seconds of blocking work and gigabytes of memory; an
 * envelope past the limits is a forgery, refused on the declared counts
 * before a struct is read.
 */
import { describe, expect, it } from 'vitest';
import { ENVELOPE_LIMITS } from '../../src/sync/envelope.js';
import type { DocName } from '../../src/types.js';
import { testNode } from '../helpers/cluster.js';
import { getDoc } from '../helpers/docs.js';
import { mallory } from '../helpers/mallory.js';
import { envelope, newFeed } from '../helpers/raw-peer.js';
import { deletions, gcStructs } from '../helpers/updates.js';

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
    expect([await seqOf('x/a', feeds.structs), await seqOf('x/b', feeds.structsAt), await seqOf('x/c', feeds.deletes), await seqOf('x/d', feeds.deletesAt)]).toEqual([undefined, 1, undefined, 1]);
    expect((await getDoc(target, 'x/b')).status).toBe(200);
    expect((await target.daemon.verify()).ok).toBe(true);
  }, 60_000);
});
