import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { OverlapIndex, type OverlapEntry } from '../../../src/sync/overlap.js';
import type { FeedKey } from '../../../src/types.js';

/**
 * The overlap index finds, by binary search, exactly the entries a scan of
 * all of a client's entries would: overlapping ranges (identical structs
 * that two origins carried) and entries added out of order included.
 */
describe('OverlapIndex.find', () => {
  const range = fc.record({ client: fc.nat(3), from: fc.nat(200), len: fc.integer({ min: 1, max: 60 }), feed: fc.constantFrom('a:1', 'b:2', 'c:3'), seq: fc.nat(50) });

  it('answers as a scan of every entry does, in `from` order', () => {
    fc.assert(
      fc.property(fc.array(range, { maxLength: 80 }), fc.array(fc.tuple(fc.nat(3), fc.nat(260), fc.integer({ min: 1, max: 80 })), { minLength: 1, maxLength: 20 }), (added, queries) => {
        const index = new OverlapIndex();
        const all: (OverlapEntry & { client: number })[] = [];
        for (const r of added) {
          const entry = { from: r.from, to: r.from + r.len, feed: r.feed as FeedKey, seq: r.seq };
          index.add(r.client, entry);
          all.push({ ...entry, client: r.client });
        }
        for (const [client, from, len] of queries) {
          const to = from + len;
          const expected = all.filter((e) => e.client === client && e.from < to && e.to > from).map(({ client: _, ...e }) => e);
          const found = index.find(client, from, to);
          expect(found.map((e) => e.from)).toEqual([...found.map((e) => e.from)].sort((x, y) => x - y));
          expect(sortKey(found)).toEqual(sortKey(expected));
        }
      }),
      { numRuns: 500 },
    );
  });
});

const sortKey = (entries: readonly OverlapEntry[]) => entries.map((e) => `${e.from}-${e.to}-${e.feed}-${e.seq}`).sort();
