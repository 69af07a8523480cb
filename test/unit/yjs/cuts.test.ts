/**
 * applyParsedUpdate (src/yjs/cuts.ts): cutting the items an update cuts
 * before applying it, middle first, leaves the same document as Yjs alone.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as Y from 'yjs';
import { applyParsedUpdate } from '../../../src/yjs/cuts.js';
import { parseUpdate } from '../../../src/yjs/parse.js';
import { containers, randomDocument } from '../../helpers/random-doc.js';
import { rng } from '../../helpers/rng.js';
import { deletions } from '../../helpers/updates.js';

/** Another client's edits inside the document's items: values put between others, and single values deleted. */
function cuttingEdits(base: Uint8Array, seed: number): Uint8Array {
  const r = rng(seed);
  const editor = new Y.Doc();
  editor.clientID = 9;
  Y.applyUpdate(editor, base);
  const sv = Y.encodeStateVector(editor);
  editor.transact(() => {
    for (let i = 0; i < 60; i++) {
      const t = r.pick(containers(editor).filter((c): c is Y.Array<unknown> => c instanceof Y.Array));
      if (!t.length) continue;
      if (r.chance(0.5)) t.delete(r.int(t.length), 1);
      else t.insert(r.int(t.length + 1), [r.int(1000)]);
    }
  });
  return Y.encodeStateAsUpdate(editor, sv);
}

const docOf = (...updates: Uint8Array[]) => {
  const d = new Y.Doc();
  for (const u of updates) Y.applyUpdate(d, u);
  return d;
};

function expectSameDocument(a: Y.Doc, b: Y.Doc): void {
  for (const name of ['a', 'm', 'x']) expect(a.get(name).toJSON()).toEqual(b.get(name).toJSON());
  expect(Y.decodeStateVector(Y.encodeStateVector(a))).toEqual(Y.decodeStateVector(Y.encodeStateVector(b)));
  expect(Y.equalDeleteSets(Y.createDeleteSetFromStructStore(a.store), Y.createDeleteSetFromStructStore(b.store)), 'the same deletions').toBe(true);
  // Each holds all the other does: encoded, and applied to a fresh document, the same again.
  const [copyA, copyB] = [docOf(Y.encodeStateAsUpdate(a)), docOf(Y.encodeStateAsUpdate(b))];
  for (const name of ['a', 'm', 'x']) expect(copyA.get(name).toJSON()).toEqual(copyB.get(name).toJSON());
}

describe('applyParsedUpdate', () => {
  it('random documents with long items, then another client\'s edits inside them: the same document as Yjs makes, and later edits land alike', () => {
    fc.assert(
      fc.property(fc.integer(), fc.integer(), fc.integer(), (seed, editSeed, laterSeed) => {
        const base = randomDocument(seed);
        const edits = cuttingEdits(base, editSeed);
        const plain = docOf(base, edits);
        const cut = docOf(base);
        applyParsedUpdate(cut, edits, parseUpdate(edits));
        expectSameDocument(cut, plain);
        // An edit made on top of the result (against Yjs's own document) lands alike on both.
        const later = cuttingEdits(Y.encodeStateAsUpdate(plain), laterSeed);
        applyParsedUpdate(cut, later, parseUpdate(later));
        Y.applyUpdate(plain, later);
        expectSameDocument(cut, plain);
      }),
      { numRuns: 200 },
    );
  });

  it('the update\'s origin names the transaction, as Y.applyUpdate does', () => {
    const base = new Y.Doc();
    base.clientID = 5;
    base.getArray('a').push(Array.from({ length: 100 }, (_, i) => i));
    const doc = docOf(Y.encodeStateAsUpdate(base));
    const origins: unknown[] = [];
    doc.on('afterTransaction', (tr: Y.Transaction) => origins.push([tr.origin, tr.local]));
    const update = deletions(5, Array.from({ length: 40 }, (_, i) => [2 * i, 1]));
    const origin = { app: 1 };
    applyParsedUpdate(doc, update, parseUpdate(update), origin);
    expect(origins).toEqual([[origin, false]]);
    expect(doc.getArray('a').toArray()).toEqual([...Array.from({ length: 40 }, (_, i) => 2 * i + 1), ...Array.from({ length: 20 }, (_, i) => 80 + i)]);
  });

  it('8,192 deletions across one item of a million values: the document Yjs makes (Yjs alone takes tens of seconds)', () => {
    const base = new Y.Doc();
    base.clientID = 5;
    base.getArray('a').push(Array.from({ length: 1_000_000 }, (_, i) => i % 100));
    const doc = docOf(Y.encodeStateAsUpdate(base));
    const update = deletions(5, Array.from({ length: 8192 }, (_, i) => [i * 122, 1]));
    applyParsedUpdate(doc, update, parseUpdate(update));
    const want = Array.from({ length: 1_000_000 }, (_, i) => i % 100).filter((_, i) => i % 122 !== 0 || i >= 8192 * 122);
    expect(doc.getArray('a').toArray()).toEqual(want);
  });
});
