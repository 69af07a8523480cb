import * as Y from 'yjs';
import type { ParsedUpdate } from './parse.js';

/**
 * Applies an update, first cutting the items it will cut, in a way that
 * keeps the work near linear.
 *
 * Yjs cuts an item wherever an update deletes part of it or puts something
 * next to a unit inside it, in the order the update lists those places, and
 * each cut costs twice over. It copies both halves of an item of many values
 * (ContentAny, ContentJSON), so cutting one item at k places from left to
 * right copies it about k times; and it inserts the new half into the
 * client's array of structs, moving everything after it. An update of 8,192
 * one-value deletions across an array item of a million numbers (about
 * 30 KB, from anyone who may write the document) took 46 s to apply.
 *
 * Here each item is cut first at its middle place, then each half at its
 * middle, and so on, so every copy is of a piece half the size of the one
 * before; the pieces go into the client's array in one pass. The same update
 * takes 0.2 s, and the document comes out the same: a cut only splits an item
 * in two, never changes what it holds. The pieces are not offered to Yjs to
 * join again at the end of the transaction (joining copies too; a piece that
 * nothing came between stays a piece, as it may in any Yjs document).
 *
 * Only places inside items already in the document are cut here, and only
 * for a client with at least CUTS_WORTH_ORDERING of them: the order of a few
 * cuts costs nothing, and an app's keystroke pays no more than a loop over
 * its structs.
 */
export function applyParsedUpdate(doc: Y.Doc, update: Uint8Array, parsed: ParsedUpdate, origin?: unknown): void {
  const places = placesToCut(doc, parsed);
  if (!places.size) return Y.applyUpdate(doc, update, origin);
  Y.transact(
    doc,
    (tr) => {
      const merging = tr._mergeStructs.length;
      for (const [client, clocks] of places) cutClient(tr, client, clocks);
      tr._mergeStructs.length = merging;
      Y.applyUpdate(doc, update, origin);
    },
    origin,
    false,
  );
}

const CUTS_WORTH_ORDERING = 16;

/** Per client, the clocks at which the update cuts items the document holds: where there are enough to order. */
function placesToCut(doc: Y.Doc, parsed: ParsedUpdate): Map<number, number[]> {
  const places = new Map<number, number[]>();
  const state = new Map<number, number>();
  const add = (client: number, clock: number) => {
    const held = state.get(client) ?? state.set(client, Y.getState(doc.store, client)).get(client)!;
    if (clock > 0 && clock < held) (places.get(client) ?? places.set(client, []).get(client)!).push(clock);
  };
  for (const s of parsed.structs) {
    // Yjs cuts after the origin's unit and before the right origin's.
    if (s.origin) add(s.origin[0], s.origin[1] + 1);
    if (s.rightOrigin) add(s.rightOrigin[0], s.rightOrigin[1]);
  }
  for (const [client, ranges] of parsed.deletes) {
    for (const [clock, len] of ranges) {
      add(client, clock);
      add(client, clock + len);
    }
  }
  for (const [client, clocks] of places) if (clocks.length < CUTS_WORTH_ORDERING) places.delete(client);
  return places;
}

type Struct = Y.Item | Y.GC;

/** Cuts `client`'s items at each of `clocks` (all within what the document holds), and puts the pieces in its array of structs. */
function cutClient(tr: Y.Transaction, client: number, clocks: number[]): void {
  const store = tr.doc.store;
  const structs = store.clients.get(client) as Struct[];
  clocks.sort((a, b) => a - b);
  const out: Struct[] = [];
  let copied = 0;
  for (let c = 0; c < clocks.length; ) {
    const index = Y.findIndexSS(structs, clocks[c]!);
    while (copied < index) out.push(structs[copied++]!);
    const struct = structs[index]!;
    const inside: number[] = [];
    for (; c < clocks.length && clocks[c]! < struct.id.clock + struct.length; c++) {
      if (clocks[c]! > struct.id.clock && clocks[c] !== inside[inside.length - 1]) inside.push(clocks[c]!);
    }
    // A GC run is left whole, as Yjs leaves it.
    if (struct instanceof Y.Item && inside.length) cutItem(tr, client, struct, inside, out);
    else out.push(struct);
    copied = index + 1;
  }
  while (copied < structs.length) out.push(structs[copied++]!);
  store.clients.set(client, out);
}

/**
 * Cuts `item` at `clocks` (sorted, each inside it): the middle one first,
 * then each side the same way; appends the pieces to `out` in clock order.
 * Each cut is made by Yjs on an array holding only the piece being cut.
 */
function cutItem(tr: Y.Transaction, client: number, item: Y.Item, clocks: readonly number[], out: Struct[]): void {
  const store = tr.doc.store;
  const stack: [Y.Item, number, number][] = [[item, 0, clocks.length]];
  while (stack.length) {
    const [piece, from, to] = stack.pop()!;
    if (from >= to) {
      out.push(piece);
      continue;
    }
    const mid = (from + to) >>> 1;
    store.clients.set(client, [piece]);
    const right = Y.getItemCleanStart(tr, Y.createID(client, clocks[mid]!));
    // The left side is taken next, so pieces come out in order.
    stack.push([right, mid + 1, to], [piece, from, mid]);
  }
}
