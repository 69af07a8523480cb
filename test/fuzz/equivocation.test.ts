import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as Y from 'yjs';
import { generateKeyPair } from '../../src/identity/keys.js';
import type { NodeId } from '../../src/types.js';
import { setPeers, testNode } from '../helpers/cluster.js';
import { getDoc } from '../helpers/docs.js';
import { envelope, newFeed } from '../helpers/raw-peer.js';

/**
 * The equivocation check (DESIGN.md §4) against a writer's keystrokes held
 * in several envelopes: a second origin's copy of any part of them passes
 * when it is the same, and is refused, with an alarm, when one character in
 * it differs, however Yjs split or merged the structs on either side.
 */

/** The updates of client 7 typing `ops` (each a text inserted at a position). */
function typing(ops: readonly (readonly [number, string])[]): Uint8Array[] {
  const doc = new Y.Doc();
  doc.clientID = 7;
  const out: Uint8Array[] = [];
  doc.on('update', (u: Uint8Array) => out.push(u));
  for (const [pos, text] of ops) doc.getText('t').insert(pos % (doc.getText('t').length + 1), text);
  return out;
}

describe('the equivocation check', () => {
  it('passes a same copy of any part of held typing and refuses one with a single character changed', async () => {
    const node = await testNode('eq-fuzz');
    const [first, second] = await Promise.all([generateKeyPair(), generateKeyPair()]);
    await setPeers(node, [first, second].map((o, i) => ({ name: `o${i}`, id: o.id, publicKey: o.publicJwk, read: [], write: ['**'] })));
    const alarms: { doc: string; kind: string }[] = [];
    node.daemon.docs.on('alarm', (a: { doc: string; kind: string }) => alarms.push(a));
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.nat(), fc.constantFrom('a', 'bc', 'def', 'é', '😀')), { minLength: 1, maxLength: 25 }),
        fc.nat(),
        fc.nat(),
        fc.nat(),
        fc.integer({ min: 1, max: 4 }),
        fc.boolean(),
        async (ops, changeAt, from, size, pieces, change) => {
          const doc = `eq/${run++}`;
          const m = changeAt % ops.length;
          // The same keystrokes, one of them with another first character (same length, so the same clocks).
          const forged = ops.map(([pos, text], i) => [pos, i === m && change ? (text.startsWith('z') ? 'y' : 'z') + text.slice(1) : text] as const);
          const honest = typing(ops);
          const copy = typing(forged);
          // The first origin's keystrokes arrive in `pieces` envelopes.
          const feed = newFeed();
          const per = Math.ceil(honest.length / pieces);
          const held = [];
          for (let i = 0, seq = 1; i < honest.length; i += per, seq++) held.push(envelope(first, { doc, feed, seq, update: Y.mergeUpdates(honest.slice(i, i + per)) }));
          expect((await node.daemon.docs.receive(first.id as NodeId, held)).accepted).toBe(held.length);
          // The second origin sends a copy of a run of them.
          const a = from % copy.length;
          const b = Math.min(copy.length, a + 1 + (size % copy.length));
          const before = alarms.length;
          await node.daemon.docs.receive(second.id as NodeId, [envelope(second, { doc, feed: newFeed(), seq: 1, update: Y.mergeUpdates(copy.slice(a, b)) })]);
          const differs = change && a <= m && m < b;
          expect(alarms.slice(before).some((x) => x.doc === doc && x.kind === 'equivocation')).toBe(differs);
          const reference = new Y.Doc();
          for (const u of honest) Y.applyUpdate(reference, u);
          expect((await getDoc(node, doc)).body.t).toBe(reference.getText('t').toString());
        },
      ),
      { numRuns: 150 },
    );
    await node.daemon.stop();
  }, 120_000);

  it('a copy of a run of array values passes when the same and is refused when one value inside it differs', async () => {
    const node = await testNode('eq-values');
    const [first, second] = await Promise.all([generateKeyPair(), generateKeyPair()]);
    await setPeers(node, [first, second].map((o, i) => ({ name: `o${i}`, id: o.id, publicKey: o.publicJwk, read: [], write: ['**'] })));
    const alarms: string[] = [];
    node.daemon.docs.on('alarm', (a: { doc: string; kind: string }) => alarms.push(`${a.doc} ${a.kind}`));
    const values = (changed?: number) => {
      const d = new Y.Doc();
      d.clientID = 7;
      d.getArray('a').push(Array.from({ length: 50 }, (_, i) => (i === changed ? { v: 'other' } : { v: i })));
      return Y.encodeStateAsUpdate(d);
    };
    for (const [doc, changed] of [['eq/same', undefined], ['eq/changed', 37]] as const) {
      expect((await node.daemon.docs.receive(first.id as NodeId, [envelope(first, { doc, feed: newFeed(), seq: 1, update: values() })])).accepted).toBe(1);
      await node.daemon.docs.receive(second.id as NodeId, [envelope(second, { doc, feed: newFeed(), seq: 1, update: values(changed) })]);
    }
    expect(alarms).toEqual(['eq/changed equivocation']);
    expect(((await getDoc(node, 'eq/changed')).body.a as { v: unknown }[])[37]).toEqual({ v: 37 });
    await node.daemon.stop();
  });
});
