/** joinAdjacent (src/yjs/join.ts): a state applied an update at a time, joined, encodes as the same state loaded whole, and edits on it land alike. */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as Y from 'yjs';
import { joinAdjacent } from '../../../src/yjs/join.js';
import { containers, randomDocument } from '../../helpers/random-doc.js';
import { rng } from '../../helpers/rng.js';

const hex = (d: Y.Doc) => Buffer.from(Y.encodeStateAsUpdate(d)).toString('hex');

/** 40 edits of all kinds on a random document, each its own update; and the document they came from. */
function edited(seed: number) {
  const r = rng(seed);
  const editor = new Y.Doc();
  editor.clientID = 9;
  Y.applyUpdate(editor, randomDocument(seed));
  const base = Y.encodeStateAsUpdate(editor);
  const updates: Uint8Array[] = [];
  editor.on('update', (u: Uint8Array) => updates.push(u));
  for (let i = 0; i < 40; i++) {
    editor.transact(() => {
      const t = r.pick(containers(editor));
      if (t instanceof Y.Map) {
        const key = `k${r.int(4)}`;
        if (r.chance(0.3)) t.delete(key);
        else t.set(key, r.chance(0.2) ? new Y.Array() : r.int(9));
      } else if (t.length && r.chance(0.5)) t.delete(r.int(t.length), 1);
      else t.insert(r.int(t.length + 1), (t instanceof Y.Array ? [r.chance(0.2) ? new Y.Map() : r.int(9)] : [new Y.XmlText('q')]) as never);
    });
  }
  return { base, updates };
}

describe('joinAdjacent', () => {
  it('applied an update at a time then joined: the encoding of the same state loaded whole, or applied in another order', () => {
    fc.assert(
      fc.property(fc.integer(), (seed) => {
        const { base, updates } = edited(seed);
        const piecemeal = new Y.Doc();
        Y.applyUpdate(piecemeal, base);
        for (const u of updates) Y.applyUpdate(piecemeal, u);
        const reversed = new Y.Doc();
        Y.applyUpdate(reversed, base);
        for (const u of [...updates].reverse()) Y.applyUpdate(reversed, u);
        const whole = new Y.Doc();
        Y.applyUpdate(whole, Y.encodeStateAsUpdate(piecemeal));
        joinAdjacent(piecemeal);
        joinAdjacent(reversed);
        expect(hex(piecemeal)).toBe(hex(whole));
        expect(hex(reversed)).toBe(hex(whole));
        // Edits at positions found through the (search-marked) joined items land where they land on the whole.
        for (const d of [piecemeal, whole]) {
          const r = rng(seed);
          d.clientID = 77;
          for (let i = 0; i < 10; i++) {
            const a = d.getArray('a');
            a.insert(r.int(a.length + 1), [i]);
            if (a.length > 1) a.delete(r.int(a.length - 1), 1);
          }
        }
        expect(piecemeal.getArray('a').toJSON()).toEqual(whole.getArray('a').toJSON());
        expect(hex(piecemeal)).toBe(hex(whole));
      }),
      { numRuns: 200 },
    );
  });
});
