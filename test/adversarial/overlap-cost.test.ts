/**
 * The equivocation check compares what an envelope carries with the first
 * envelope that carried each of its clocks here. It found that carrier by a
 * scan of every carrier for each run of clocks: one string of 65,536
 * characters, sent again over 65,536 one-character envelope ranges (48
 * envelopes, 2 MB), took a node 25.7 s. It now sweeps the carriers once.
 */
import * as encoding from 'lib0/encoding';
import { describe, expect, it } from 'vitest';
import type { DocName } from '../../src/types.js';
import { testNode } from '../helpers/cluster.js';
import { mallory } from '../helpers/mallory.js';
import { envelope, newFeed } from '../helpers/raw-peer.js';
import { everyOther } from '../helpers/updates.js';

const CLIENT = 7;
const CHARS = 65_536;
const PER = 2_800;

/** CLIENT's CHARS characters of "t" as one string struct. */
function wholeRun(): Uint8Array {
  const e = encoding.createEncoder();
  for (const x of [1, 1, CLIENT, 0]) encoding.writeVarUint(e, x);
  encoding.writeUint8(e, 4);
  encoding.writeVarUint(e, 1);
  encoding.writeVarString(e, 't');
  encoding.writeVarString(e, 'a'.repeat(CHARS));
  encoding.writeVarUint(e, 0);
  return encoding.toUint8Array(e);
}

describe('the equivocation check over many carriers', () => {
  it(`a run of ${CHARS.toLocaleString('en-US')} characters sent again over as many one-character ranges is checked and applied (it took 25.7 s)`, async () => {
    const target = await testNode('target');
    const m = await mallory(target, [], [], { read: [], write: ['x/**'] });
    const [doc, feed] = ['x/eq', newFeed()];
    let seq = 0;
    for (let from = 0; from < CHARS; from += PER) {
      for (const parity of [0, 1] as const) m.peer.offer(envelope(m.pair, { doc, feed, seq: ++seq, update: everyOther(CLIENT, from, Math.min(CHARS, from + PER), parity) }));
    }
    await m.settle();
    expect((await target.daemon.docs.vector(doc as DocName))[`${m.pair.id}:${feed}`]).toBe(seq);
    const again = newFeed();
    m.peer.offer(envelope(m.pair, { doc, feed: again, seq: 1, update: wholeRun() }));
    await m.settle();
    expect((await target.daemon.docs.vector(doc as DocName))[`${m.pair.id}:${again}`]).toBe(1);
    expect(target.lines.some((l) => l.msg === 'equivocation: refused the mismatching part of an envelope')).toBe(false);
  }, 20_000);
});
