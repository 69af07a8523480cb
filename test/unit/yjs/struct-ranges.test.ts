/** structRanges in one pass: the same ranges (the `clients` claim every node compares) as sorting every struct. */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { normalizeRanges, StructKind, structRanges, type ParsedStruct } from '../../../src/yjs/parse.js';

const struct = (client: number, clock: number, length: number, kind: number): ParsedStruct => ({ client, clock, length, kind, start: 0, end: 0, origin: null, rightOrigin: null, parent: null, parentSub: null, content: null, contentStart: 0 });

/** Every non-skip struct's span, sorted and merged: what structRanges has always meant. */
const reference = (structs: readonly ParsedStruct[]) => normalizeRanges(structs.filter((s) => s.kind !== StructKind.skip).map((s) => [s.client, s.clock, s.clock + s.length]));

describe('structRanges', () => {
  it('equals sorting every struct, for clients in any order with skips, gaps and out-of-order clocks', () => {
    const run = fc.record({ client: fc.nat(5), start: fc.nat(50), parts: fc.array(fc.record({ length: fc.integer({ min: 1, max: 4 }), kind: fc.constantFrom(0, 1, 4, 7, 10), jump: fc.integer({ min: -3, max: 3 }) }), { maxLength: 12 }) });
    fc.assert(
      fc.property(fc.array(run, { maxLength: 6 }), (runs) => {
        const structs: ParsedStruct[] = [];
        for (const r of runs) {
          let clock = r.start;
          for (const p of r.parts) {
            clock = Math.max(0, clock + (p.jump > 1 ? p.jump : 0) - (p.jump < -1 ? 2 : 0));
            structs.push(struct(r.client, clock, p.length, p.kind));
            clock += p.length;
          }
        }
        expect(structRanges(structs)).toEqual(reference(structs));
      }),
      { numRuns: 2000 },
    );
  });
});
