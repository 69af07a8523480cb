/**
 * Pending structs (src/yjs/pending.ts): tried again as soon as what one of
 * them waits for arrives, and not at every change of the client it waits
 * on; the same document as Yjs alone, whatever order updates come in.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as encoding from 'lib0/encoding';
import * as Y from 'yjs';
import { applyParsedUpdate } from '../../../src/yjs/cuts.js';
import { parseUpdate } from '../../../src/yjs/parse.js';
import { containers, randomDocument } from '../../helpers/random-doc.js';
import { rng } from '../../helpers/rng.js';

const apply = (doc: Y.Doc, u: Uint8Array) => applyParsedUpdate(doc, u, parseUpdate(u));
const hex = (d: Y.Doc) => Buffer.from(Y.encodeStateAsUpdate(d)).toString('hex');

describe('pending structs', () => {
  it('updates of several clients in any order: the document Yjs makes, nothing left pending once all are in', () => {
    fc.assert(
      fc.property(fc.integer(), fc.integer(), (seed, orderSeed) => {
        // Three clients' edits as separate updates, each depending on what came before it.
        const r = rng(seed);
        const docs = [1, 2, 3].map((id) => Object.assign(new Y.Doc(), { clientID: id }));
        Y.applyUpdate(docs[0]!, randomDocument(seed));
        for (const d of docs.slice(1)) Y.applyUpdate(d, Y.encodeStateAsUpdate(docs[0]!));
        const base = Y.encodeStateAsUpdate(docs[0]!);
        const updates: Uint8Array[] = [];
        for (const d of docs) d.on('update', (u: Uint8Array) => updates.push(u));
        for (let i = 0; i < 40; i++) {
          const d = r.pick(docs);
          const t = r.pick(containers(d));
          if (t instanceof Y.Map) t.set(`k${r.int(3)}`, r.int(9));
          else if (t.length && r.chance(0.4)) t.delete(r.int(t.length), 1);
          else if (t instanceof Y.Array) t.insert(r.int(t.length + 1), [r.int(9)]);
          else t.insert(r.int(t.length + 1), [new Y.XmlText('q')]);
          if (r.chance(0.3)) for (const other of docs) Y.applyUpdate(other, Y.encodeStateAsUpdate(d));
        }
        const o = rng(orderSeed);
        const shuffled = [...updates];
        for (let i = shuffled.length - 1; i > 0; i--) {
          const j = o.int(i + 1);
          [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
        }
        const plain = new Y.Doc();
        const node = new Y.Doc();
        Y.applyUpdate(plain, base);
        Y.applyUpdate(node, base);
        for (const u of shuffled) {
          Y.applyUpdate(plain, u);
          apply(node, u);
        }
        expect(node.store.pendingStructs).toBeNull();
        expect(hex(node)).toBe(hex(plain));
      }),
      { numRuns: 150 },
    );
  });

  it('structs waiting on a clock a client reaches only later are not tried again at each of its keystrokes, and go in once it is reached', () => {
    const honest = new Y.Doc();
    honest.clientID = 1;
    const text = honest.getText('t');
    text.insert(0, 'start');
    const doc = new Y.Doc();
    apply(doc, Y.encodeStateAsUpdate(honest));
    // Client 9's string after client 1's clock 20 (not written yet).
    const e = encoding.createEncoder();
    for (const x of [1, 1, 9, 0]) encoding.writeVarUint(e, x);
    encoding.writeUint8(e, 4 | 0x80);
    encoding.writeVarUint(e, 1);
    encoding.writeVarUint(e, 20);
    encoding.writeVarString(e, 'waits');
    encoding.writeVarUint(e, 0);
    const waiting = encoding.toUint8Array(e);
    apply(doc, waiting);
    const held = doc.store.pendingStructs!.update;
    expect(doc.store.pendingStructs!.missing).toEqual(new Map([[1, 20]]));
    for (let i = 0; i < 10; i++) {
      const sv = Y.encodeStateVector(honest);
      text.insert(text.length, 'x');
      apply(doc, Y.encodeStateAsUpdate(honest, sv));
      // Yjs would have decoded, tried and encoded the pending structs again: the same bytes show it did not.
      expect(doc.store.pendingStructs!.update).toBe(held);
    }
    const sv = Y.encodeStateVector(honest);
    text.insert(text.length, 'y'.repeat(8));
    apply(doc, Y.encodeStateAsUpdate(honest, sv));
    expect(doc.store.pendingStructs).toBeNull();
    // Where Yjs alone puts it.
    const plain = new Y.Doc();
    Y.applyUpdate(plain, Y.encodeStateAsUpdate(honest));
    Y.applyUpdate(plain, waiting);
    expect(doc.getText('t').toString()).toBe(plain.getText('t').toString());
    expect(doc.getText('t').toString()).toContain('waits');
  });
});
