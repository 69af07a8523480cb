/**
 * ContentType's delete and gc as iterative walks (src/yjs/type-walks.ts):
 * the same document, delete set and changed types as Yjs's recursion on
 * random documents, and no stack overflow for types nested far deeper than
 * the recursion can go.
 */
import { afterAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as Y from 'yjs';
import { walkTypesIteratively, walkTypesRecursively } from '../../../src/yjs/type-walks.js';
import { deletion, nestedArrays } from '../../helpers/updates.js';
import { containers, randomDocument } from '../../helpers/random-doc.js';
import { rng } from '../../helpers/rng.js';

afterAll(walkTypesIteratively);

/** What applying `update` did, under whichever walks are installed. */
function applyAndWatch(base: Uint8Array, change: (doc: Y.Doc) => void) {
  const doc = new Y.Doc();
  Y.applyUpdate(doc, base);
  let seen: { deleteSet: ReturnType<typeof Y.createDeleteSet>; changed: string[]; merge: string[] } | undefined;
  doc.on('afterTransaction', (tr: Y.Transaction) => {
    const where = (t: Y.AbstractType<any>) => (t._item ? `${t._item.id.client}:${t._item.id.clock}` : 'root');
    seen = {
      deleteSet: tr.deleteSet,
      changed: [...tr.changed].map(([t, subs]) => `${where(t)} ${[...subs].join(',')}`),
      merge: tr._mergeStructs.map((s) => `${s.id.client}:${s.id.clock}`),
    };
  });
  change(doc);
  return { state: Y.encodeStateAsUpdate(doc), json: doc.toJSON(), seen };
}

/** The same change under Yjs's recursion and under the iterative walks. */
function bothWays(base: Uint8Array, change: (doc: Y.Doc) => void) {
  walkTypesRecursively();
  const recursive = applyAndWatch(base, change);
  walkTypesIteratively();
  const iterative = applyAndWatch(base, change);
  return { recursive, iterative };
}

function expectSame({ recursive, iterative }: ReturnType<typeof bothWays>): void {
  expect(iterative.json).toEqual(recursive.json);
  expect(Buffer.from(iterative.state).equals(Buffer.from(recursive.state)), 'the same encoded document').toBe(true);
  expect(iterative.seen?.changed).toEqual(recursive.seen?.changed);
  expect(iterative.seen?.merge).toEqual(recursive.seen?.merge);
  expect(Y.equalDeleteSets(iterative.seen!.deleteSet, recursive.seen!.deleteSet), 'the same delete set').toBe(true);
}

describe('iterative type walks', () => {
  it('delete and collect types nested 100,000 deep, where the recursion overflows the stack', () => {
    const nested = nestedArrays(100_000);
    walkTypesRecursively();
    const broken = new Y.Doc();
    Y.applyUpdate(broken, nested);
    expect(() => Y.applyUpdate(broken, deletion(7, 0))).toThrow(RangeError);

    walkTypesIteratively();
    const doc = new Y.Doc();
    Y.applyUpdate(doc, nested);
    Y.applyUpdate(doc, deletion(7, 0));
    expect(doc.getArray('a').length).toBe(0);
    // Everything inside was collected: the outer item keeps its place, deleted; all it held is one GC run.
    const [outer, inner, ...rest] = doc.store.clients.get(7)!;
    expect([outer instanceof Y.Item && outer.content instanceof Y.ContentDeleted, inner instanceof Y.GC && inner.length, rest.length]).toEqual([true, 99_999, 0]);
    const copy = new Y.Doc();
    Y.applyUpdate(copy, Y.encodeStateAsUpdate(doc));
    expect(copy.getArray('a').toJSON()).toEqual([]);
    // With gc off, the deletion alone (the recursion overflowed there too).
    const kept = new Y.Doc({ gc: false });
    Y.applyUpdate(kept, nested);
    Y.applyUpdate(kept, deletion(7, 0));
    expect(kept.getArray('a').length).toBe(0);
  });

  it('a local deletion of a deep type (as an app makes it) is iterative too', () => {
    const doc = new Y.Doc();
    Y.applyUpdate(doc, nestedArrays(50_000));
    doc.getArray('a').delete(0, 1);
    expect(doc.toJSON()).toEqual({ a: [] });
  });

  it('random documents: deletions from an update leave the same document, delete set and changed types as the recursion', () => {
    fc.assert(
      fc.property(fc.integer(), fc.integer(), (seed, pickSeed) => {
        const base = randomDocument(seed);
        // Another client deletes a few of the items (types among them), as an update.
        const r = rng(pickSeed);
        const editor = new Y.Doc();
        editor.clientID = 9;
        Y.applyUpdate(editor, base);
        const sv = Y.encodeStateVector(editor);
        editor.transact(() => {
          for (let i = 0; i < 3; i++) {
            const t = r.pick(containers(editor));
            if (t instanceof Y.Map) {
              const keys = [...t.keys()];
              if (keys.length) t.delete(r.pick(keys));
            } else if (t.length) t.delete(r.int(t.length), 1);
          }
        });
        const deletion = Y.encodeStateAsUpdate(editor, sv);
        expectSame(bothWays(base, (doc) => Y.applyUpdate(doc, deletion)));
      }),
      { numRuns: 150 },
    );
  });

  it('random documents: a local deletion in a transaction does the same as the recursion', () => {
    fc.assert(
      fc.property(fc.integer(), (seed) => {
        const base = randomDocument(seed);
        expectSame(
          bothWays(base, (doc) =>
            doc.transact(() => {
              const a = doc.getArray('a');
              if (a.length) a.delete(0, a.length);
              for (const k of [...doc.getMap('m').keys()]) doc.getMap('m').delete(k);
            }),
          ),
        );
      }),
      { numRuns: 100 },
    );
  });
});
