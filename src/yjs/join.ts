import * as Y from 'yjs';

type Struct = Y.Item | Y.GC;

/**
 * Joins every pair of adjacent structs of a client that Yjs can join (GC
 * runs, deleted items, runs of one insert), as loading the document's state
 * in one update would. Yjs joins structs only where a transaction touched
 * them, so a state applied an update at a time can encode otherwise than the
 * same state loaded whole (two GC runs side by side, say, against one): its
 * digest differed after a node restarted from its snapshot. Joined, the
 * encoding depends on what the document holds, not on how it came by it.
 * Joining is what Yjs does at the end of a transaction, search markers and
 * map entries kept right (Item.mergeWith, tryToMergeWithLefts).
 */
export function joinAdjacent(doc: Y.Doc): void {
  for (const [client, structs] of doc.store.clients as Map<number, Struct[]>) {
    const out: Struct[] = [];
    for (const right of structs) {
      const left = out[out.length - 1];
      if (left && left.deleted === right.deleted && left.constructor === right.constructor && left.mergeWith(right as never)) {
        if (right instanceof Y.Item && right.parentSub !== null) {
          const parent = right.parent as Y.AbstractType<unknown>;
          if (parent._map.get(right.parentSub) === right) parent._map.set(right.parentSub, left as Y.Item);
        }
        continue;
      }
      out.push(right);
    }
    if (out.length !== structs.length) doc.store.clients.set(client, out);
  }
}
