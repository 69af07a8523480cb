/**
 * Array items whose pieces share one array (src/yjs/content-runs.ts): the
 * same documents and the same encodings as Yjs's own copying, whatever cuts
 * and joins them; and an update that cuts one long item at thousands of
 * places in itself applies (it ran Yjs out of memory).
 */
import { afterAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as encoding from 'lib0/encoding';
import * as Y from 'yjs';
import { copyContentArrays, shareContentRuns } from '../../../src/yjs/content-runs.js';
import { containers, randomDocument } from '../../helpers/random-doc.js';
import { rng } from '../../helpers/rng.js';
import { deletions, valuesInside } from '../../helpers/updates.js';

afterAll(shareContentRuns);

/** A document made and edited by `seed`: another client cuts, joins, types into and deletes from its array items. */
function edited(seed: number) {
  const r = rng(seed);
  const doc = new Y.Doc();
  doc.clientID = 9;
  Y.applyUpdate(doc, randomDocument(seed));
  const updates: Uint8Array[] = [];
  doc.on('update', (u: Uint8Array) => updates.push(u));
  for (let i = 0; i < 80; i++) {
    const arrays = containers(doc).filter((c): c is Y.Array<unknown> => c instanceof Y.Array);
    const t = r.pick(arrays);
    const k = r.int(4);
    if (k === 0 && t.length) {
      const at = r.int(t.length);
      t.delete(at, 1 + r.int(Math.min(5, t.length - at)));
    } else if (k === 1) t.push([r.int(100)]); // joins the item on its left at the end of the transaction
    else if (k === 2) doc.transact(() => [0, 1, 2].forEach(() => t.insert(r.int(t.length + 1), [r.int(100), 'x'])));
    else t.insert(r.int(t.length + 1), Array.from({ length: 1 + r.int(30) }, (_, j) => j));
  }
  // Another document, fed the edits one by one: it cuts and joins on receiving.
  const other = new Y.Doc();
  Y.applyUpdate(other, randomDocument(seed));
  for (const u of updates) Y.applyUpdate(other, u);
  return [doc, other].map((d) => ({ state: Buffer.from(Y.encodeStateAsUpdate(d)).toString('base64'), json: ['a', 'm', 'x'].map((n) => d.get(n).toJSON()) }));
}

/** Client 4's one ContentJSON item of `n` values in root array "j" (the encoding older Yjs wrote). */
function jsonItem(n: number): Uint8Array {
  const e = encoding.createEncoder();
  for (const x of [1, 1, 4, 0]) encoding.writeVarUint(e, x);
  encoding.writeUint8(e, 2);
  encoding.writeVarUint(e, 1);
  encoding.writeVarString(e, 'j');
  encoding.writeVarUint(e, n);
  for (let i = 0; i < n; i++) encoding.writeVarString(e, i % 7 === 0 ? 'undefined' : JSON.stringify({ i }));
  encoding.writeVarUint(e, 0);
  return encoding.toUint8Array(e);
}

function jsonEdited(seed: number) {
  const r = rng(seed);
  const doc = new Y.Doc();
  doc.clientID = 8;
  Y.applyUpdate(doc, jsonItem(60));
  const ranges: [number, number][] = [];
  for (let clock = r.int(3); clock < 60; clock += 2 + r.int(6)) ranges.push([clock, 1 + r.int(2)]);
  Y.applyUpdate(doc, deletions(4, ranges.filter(([c, l]) => c + l <= 60)));
  const j = doc.getArray('j');
  for (let i = 0; i < 5; i++) j.insert(r.int(j.length + 1), [i]);
  return { state: Buffer.from(Y.encodeStateAsUpdate(doc)).toString('base64'), json: j.toJSON() };
}

/** `make` under Yjs's own arrays, then under shared runs. */
function bothWays<T>(make: () => T): { own: T; shared: T } {
  copyContentArrays();
  const own = make();
  shareContentRuns();
  return { own, shared: make() };
}

describe('shared content runs', () => {
  it('random documents cut, joined, typed into and deleted from, locally and by update: the same encodings as Yjs copying', () => {
    fc.assert(
      fc.property(fc.integer(), (seed) => {
        const { own, shared } = bothWays(() => edited(seed));
        expect(shared).toEqual(own);
      }),
      { numRuns: 150 },
    );
  });

  it('ContentJSON items (undefined values among them) cut by deletions and inserts: the same as Yjs copying', () => {
    fc.assert(
      fc.property(fc.integer(), (seed) => {
        const { own, shared } = bothWays(() => jsonEdited(seed));
        expect(shared).toEqual(own);
      }),
      { numRuns: 100 },
    );
  });

  it('one update: 20,000 values put inside an item of 200,000 it also carries (Yjs ran out of memory joining the pieces)', () => {
    const [long, inside] = [200_000, 20_000];
    const doc = new Y.Doc();
    Y.applyUpdate(doc, valuesInside(long, inside));
    const values = doc.getArray<number>('a').toArray();
    expect([values.length, values.filter((v) => v === -1).length, values.filter((v) => v !== -1).every((v, i) => v === i % 100)]).toEqual([long + inside, inside, true]);
  });
});
