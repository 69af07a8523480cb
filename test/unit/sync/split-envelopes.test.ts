/** splitForEnvelopes: a change past what one envelope may carry, as envelopes that each may, and that together are the change. */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as Y from 'yjs';
import { MAX_RANGES_PER_ENVELOPE, splitForEnvelopes } from '../../../src/sync/doc-records.js';
import { parseUpdate, structRanges } from '../../../src/yjs/parse.js';
import { randomDocument } from '../../helpers/random-doc.js';
import { atStart } from '../../helpers/updates.js';

const docOf = (updates: Uint8Array[]) => {
  const d = new Y.Doc();
  for (const u of updates) Y.applyUpdate(d, u);
  return d;
};

describe('splitForEnvelopes', () => {
  it('each part within the limits (structs, delete ranges, items at one place), applied in order the same document as the whole, every struct and deletion in exactly one part', () => {
    fc.assert(
      fc.property(fc.integer(), fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 3 }), (seed, structs, deleteRanges, crowd) => {
        const whole = randomDocument(seed);
        const parsed = parseUpdate(whole);
        const limits = { structs, deleteRanges, crowd };
        const parts = splitForEnvelopes(whole, parsed, limits);
        for (const p of parts) {
          expect(() => parseUpdate(p.update, limits)).not.toThrow();
          expect(structRanges(p.parsed.structs).length).toBeLessThanOrEqual(MAX_RANGES_PER_ENVELOPE);
        }
        const ranges = (ps: typeof parts) => JSON.stringify(structRanges(ps.flatMap((p) => p.parsed.structs)));
        expect(ranges(parts)).toBe(JSON.stringify(structRanges(parsed.structs)));
        const deletions = parts.flatMap((p) => [...p.parsed.deletes].flatMap(([c, rs]) => rs.map(([clock, len]) => `${c}:${clock}+${len}`)));
        expect(deletions.sort()).toEqual([...parsed.deletes].flatMap(([c, rs]) => rs.map(([clock, len]) => `${c}:${clock}+${len}`)).sort());
        const [split, one] = [docOf(parts.map((p) => p.update)), docOf([whole])];
        for (const name of ['a', 'm', 'x']) expect(split.get(name).toJSON()).toEqual(one.get(name).toJSON());
        expect(Y.encodeStateVector(split)).toEqual(Y.encodeStateVector(one));
      }),
      { numRuns: 150 },
    );
  });

  it('ten clients\' items at one place, three at most per envelope: four envelopes, together the change', () => {
    const whole = atStart(...Array.from({ length: 10 }, (_, i): [number, number] => [100 + i, 1]));
    const limits = { structs: 100, deleteRanges: 100, crowd: 3 };
    const parts = splitForEnvelopes(whole, parseUpdate(whole), limits);
    expect(parts.map((p) => p.parsed.structs.length)).toEqual([3, 3, 3, 1]);
    for (const p of parts) expect(() => parseUpdate(p.update, limits)).not.toThrow();
    expect(docOf(parts.map((p) => p.update)).getArray('a').toJSON()).toEqual(docOf([whole]).getArray('a').toJSON());
  });

  it('a change within the limits is one envelope, the update itself', () => {
    const whole = randomDocument(7);
    const parsed = parseUpdate(whole);
    expect(splitForEnvelopes(whole, parsed)).toEqual([{ update: whole, parsed }]);
  });
});
