/**
 * The per-session memory of refusals (PROTOCOL.md §6.6): refused feeds count
 * as held up to the highest seq refused, forgetting gives back the documents
 * to want again, and the names kept stay within their byte bound however
 * many a peer makes up.
 */
import { describe, expect, it } from 'vitest';
import { Declined, Refusals } from '../../../src/sync/refusals.js';
import type { DocName } from '../../../src/types.js';

const d = (s: string) => s as DocName;
const A = `${'a'.repeat(43)}:f1`;
const B = `${'b'.repeat(43)}:f2`;

describe('Refusals', () => {
  it('counts a refused feed as held up to the highest seq refused, and leaves other feeds alone', () => {
    const r = new Refusals();
    r.noteFeed(d('x'), A, 5);
    r.noteFeed(d('x'), A, 3);
    const mine = { [B]: 2 };
    expect(r.counted(d('x'), mine)).toEqual({ [B]: 2, [A]: 5 });
    expect(mine).toEqual({ [B]: 2 });
    // Held beyond it already: the vector itself.
    const ahead = { [A]: 9 };
    expect(r.counted(d('x'), ahead)).toBe(ahead);
    expect(r.counted(d('y'), mine)).toBe(mine);
  });

  it('forgets by origin and by what may be exchanged now, giving back the documents', () => {
    const r = new Refusals();
    r.noteFeed(d('x'), A, 1);
    r.noteFeed(d('y'), B, 1);
    r.noteUnexchangeable(d('z'));
    r.noteUnexchangeable(d('w'));
    expect(r.forgetOrigins(new Set(['a'.repeat(43)]))).toEqual(['x']);
    expect(r.counted(d('x'), {})).toEqual({});
    expect(r.forgetUnexchangeable((doc) => doc === 'z')).toEqual(['z']);
    expect(r.clear().sort()).toEqual(['w', 'y']);
    expect(r.clear()).toEqual([]);
  });

  it('keeps at most 1 MiB of names: beyond, made-up ones are not kept; forgetting makes room again', () => {
    const r = new Refusals();
    const long = 'n'.repeat(1000);
    for (let i = 0; i < 2000; i++) r.noteFeed(d(`${long}/${i}`), A, 1);
    const kept = Array.from({ length: 2000 }, (_, i) => r.counted(d(`${long}/${i}`), {})[A] === 1).filter(Boolean).length;
    expect(kept).toBeGreaterThan(800);
    expect(kept).toBeLessThan(1100);
    r.clear();
    r.noteFeed(d(`${long}/new`), A, 1);
    expect(r.counted(d(`${long}/new`), {})).toEqual({ [A]: 1 });
  });
});

describe('Declined', () => {
  it('remembers pairs until a want withdraws the document, and stops at its bound', () => {
    const n = new Declined();
    expect(n.add(d('x'), A)).toBe(true);
    expect(n.has(d('x'), A)).toBe(true);
    n.withdraw(d('x'));
    expect(n.has(d('x'), A)).toBe(false);
    let added = 0;
    while (n.add(d(`doc${added}`), A)) added++;
    expect(added).toBe(65_536);
    n.clear();
    expect(n.add(d('x'), A)).toBe(true);
  });
});
