/**
 * applyParsedUpdate (src/yjs/cuts.ts): making the cuts an update's
 * deletions make before applying it leaves the same document, encoded byte
 * for byte the same, as Yjs alone; and the client's array whole if Yjs throws.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as encoding from 'lib0/encoding';
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
  // Byte for byte: nodes compare digests of the encoded state, so no cut Yjs would not make, and every piece joined as Yjs joins it.
  expect(Buffer.from(Y.encodeStateAsUpdate(a)).toString('hex')).toBe(Buffer.from(Y.encodeStateAsUpdate(b)).toString('hex'));
}

const apply = (doc: Y.Doc, update: Uint8Array) => applyParsedUpdate(doc, update, parseUpdate(update));

/** Client 5's one item of `n` numbers in root array "a". */
function numbers(n: number): Uint8Array {
  const d = new Y.Doc();
  d.clientID = 5;
  d.getArray('a').push(Array.from({ length: n }, (_, i) => i));
  return Y.encodeStateAsUpdate(d);
}

describe('applyParsedUpdate', () => {
  it('random documents with long items, then another client\'s edits inside them: the same document and encoding as Yjs makes, and later edits land alike', () => {
    fc.assert(
      fc.property(fc.integer(), fc.integer(), fc.integer(), (seed, editSeed, laterSeed) => {
        const base = randomDocument(seed);
        const edits = cuttingEdits(base, editSeed);
        const plain = docOf(base, edits);
        const cut = docOf(base);
        apply(cut, edits);
        expectSameDocument(cut, plain);
        // An edit made on top of the result (against Yjs's own document) lands alike on both.
        const later = cuttingEdits(Y.encodeStateAsUpdate(plain), laterSeed);
        apply(cut, later);
        Y.applyUpdate(plain, later);
        expectSameDocument(cut, plain);
      }),
      { numRuns: 200 },
    );
  });

  it('deletions of values already deleted cut nothing (Yjs never cuts a deleted item), in either order', () => {
    const all = deletions(5, [[0, 100]]);
    const twenty = deletions(5, Array.from({ length: 20 }, (_, i) => [2 * i + 1, 1]));
    for (const order of [[all, twenty], [twenty, all]]) {
      const cut = docOf(numbers(100));
      for (const u of order) apply(cut, u);
      expectSameDocument(cut, docOf(numbers(100), ...order));
    }
  });

  it('a struct Yjs leaves pending, its origin between the halves of a surrogate pair, does not change the text', () => {
    const t = new Y.Doc();
    t.clientID = 5;
    t.getText('t').insert(0, '😀'.repeat(20));
    const text = Y.encodeStateAsUpdate(t);
    // Client 7's structs from clock 100 (none of 7's held): pending, never integrated.
    const e = encoding.createEncoder();
    const vu = (...xs: number[]) => xs.forEach((x) => encoding.writeVarUint(e, x));
    vu(1, 16, 7, 100);
    for (let k = 0; k < 16; k++) {
      encoding.writeUint8(e, 4 | 0x80);
      vu(5, 2 * k);
      encoding.writeVarString(e, 'x');
    }
    vu(0);
    const cut = docOf(text);
    apply(cut, encoding.toUint8Array(e));
    expect(cut.getText('t').toString()).toBe('😀'.repeat(20));
  });

  it('if Yjs throws while cutting, the client keeps every struct it held, as with Yjs alone', () => {
    const proto = Y.ContentAny.prototype as unknown as { splice: (offset: number) => unknown };
    const splice = proto.splice;
    const update = deletions(5, Array.from({ length: 20 }, (_, i) => [3 + 4 * i, 1]));
    const run = (applying: (d: Y.Doc) => void) => {
      const d = docOf(numbers(100));
      let calls = 0;
      proto.splice = function (this: unknown, offset: number) {
        if (++calls === 3) throw new Error('injected');
        return splice.call(this, offset);
      };
      try {
        expect(() => applying(d)).toThrow('injected');
      } finally {
        proto.splice = splice;
      }
      const structs = d.store.clients.get(5)!;
      return { structs: structs.length, covered: structs.reduce((n, s) => n + s.length, 0), state: Y.getState(d.store, 5) };
    };
    const plain = run((d) => Y.applyUpdate(d, update));
    const cut = run((d) => apply(d, update));
    expect(cut.covered).toBe(100);
    expect(cut.state).toBe(plain.state);
  });

  it('the update\'s origin names the transaction, as Y.applyUpdate does', () => {
    const doc = docOf(numbers(100));
    const origins: unknown[] = [];
    doc.on('afterTransaction', (tr: Y.Transaction) => origins.push([tr.origin, tr.local]));
    const update = deletions(5, Array.from({ length: 40 }, (_, i) => [2 * i, 1]));
    const origin = { app: 1 };
    applyParsedUpdate(doc, update, parseUpdate(update), origin);
    expect(origins).toEqual([[origin, false]]);
    expect(doc.getArray('a').toArray()).toEqual([...Array.from({ length: 40 }, (_, i) => 2 * i + 1), ...Array.from({ length: 20 }, (_, i) => 80 + i)]);
  });

  it('8,192 deletions across one item of a million values: the document Yjs makes', () => {
    const doc = docOf(numbers(1_000_000));
    apply(doc, deletions(5, Array.from({ length: 8192 }, (_, i) => [i * 122, 1])));
    const want = Array.from({ length: 1_000_000 }, (_, i) => i).filter((_, i) => i % 122 !== 0 || i >= 8192 * 122);
    expect(doc.getArray('a').toArray()).toEqual(want);
  });
});
