import * as Y from 'yjs';
import type { ParsedUpdate } from './parse.js';
import { hardenYjs } from './harden.js';

// Cutting one item at many places in clock order is cheap only with shared content runs.
hardenYjs();

/**
 * Applies an update, first making the cuts it will make in items the
 * document holds, all in one pass over each client's array of structs.
 *
 * Yjs cuts an item wherever an update deletes part of it or puts something
 * next to a unit inside it, and puts each new piece into the client's array
 * of structs, moving everything after it. An update of 65,536 deletions, each
 * inside another of a client's 100,000 items, moved those arrays 65,536
 * times: 6.7 s to apply, from anyone who may write the document. Cut here
 * first, the pieces go into a new array in one pass (0.5 s), and Yjs finds
 * every place already cut. The document comes out the same: a cut only
 * splits an item in two, never changes what it holds. The pieces are not
 * offered to Yjs to join again at the end of the transaction (a piece that
 * nothing came between stays a piece, as it may in any Yjs document).
 * (Cutting one item of many values is cheap in itself: content-runs.ts.)
 *
 * Only places inside items already in the document are cut here, and only
 * for a client with at least CUTS_WORTH_ORDERING of them: a few moves cost
 * nothing, and an app's keystroke pays no more than a loop over its structs.
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

/** Cuts `item` at `clocks` (sorted, each inside it), each cut made by Yjs on an array holding only the piece being cut; appends the pieces to `out`. */
function cutItem(tr: Y.Transaction, client: number, item: Y.Item, clocks: readonly number[], out: Struct[]): void {
  const store = tr.doc.store;
  let piece = item;
  for (const clock of clocks) {
    store.clients.set(client, [piece]);
    out.push(piece);
    piece = Y.getItemCleanStart(tr, Y.createID(client, clock));
  }
  out.push(piece);
}
