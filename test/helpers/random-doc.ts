/** Random Yjs documents of several clients: nested types, overwritten keys, deletions, long items. */
import * as Y from 'yjs';
import { rng } from './rng.js';

export type Container = Y.Array<unknown> | Y.Map<unknown> | Y.XmlElement | Y.XmlFragment;

/** Every live container type in the document, roots included. */
export function containers(doc: Y.Doc): Container[] {
  const out: Container[] = [doc.getArray('a'), doc.getMap('m'), doc.getXmlFragment('x')];
  for (let i = 0; i < out.length; i++) {
    const t = out[i]!;
    const children = t instanceof Y.Map ? [...t.values()] : t instanceof Y.Array ? t.toArray() : t.toArray();
    for (const c of children) if (c instanceof Y.Array || c instanceof Y.Map || c instanceof Y.XmlElement) out.push(c);
  }
  return out;
}

/** A fresh type or value to put somewhere in `into`. */
function someContent(r: ReturnType<typeof rng>, into: Container): unknown {
  if (into instanceof Y.XmlFragment || into instanceof Y.XmlElement) return r.next() < 0.6 ? new Y.XmlElement(`e${r.int(3)}`) : new Y.XmlText('t');
  const k = r.int(5);
  return k === 0 ? new Y.Array() : k === 1 ? new Y.Map() : k === 2 ? new Y.Text('s') : k === 3 ? { n: r.int(9) } : r.int(100);
}

/** Three clients editing (nesting, overwriting keys, deleting) and syncing now and then; the merged result. */
export function randomDocument(seed: number): Uint8Array {
  const r = rng(seed);
  const docs = [1, 2, 3].map((id) => Object.assign(new Y.Doc(), { clientID: id }));
  for (let step = 0; step < 120; step++) {
    const doc = r.pick(docs);
    const into = r.pick(containers(doc));
    doc.transact(() => {
      if (into instanceof Y.Map) {
        into.set(`k${r.int(4)}`, someContent(r, into));
      } else if (r.next() < 0.2 && into.length > 0) {
        const at = r.int(into.length);
        into.delete(at, Math.min(into.length - at, 1 + r.int(2)));
      } else if (into instanceof Y.Array && r.next() < 0.3) {
        // A run of values in one insert: one long item (ContentAny), which later edits cut.
        into.insert(r.int(into.length + 1), Array.from({ length: 20 + r.int(40) }, (_, i) => i));
      } else {
        into.insert(r.int(into.length + 1), [someContent(r, into) as never]);
      }
    });
    if (r.next() < 0.15) {
      const a = r.pick(docs);
      const b = r.pick(docs);
      Y.applyUpdate(b, Y.encodeStateAsUpdate(a, Y.encodeStateVector(b)));
    }
  }
  return Y.mergeUpdates(docs.map((d) => Y.encodeStateAsUpdate(d)));
}

