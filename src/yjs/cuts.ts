import * as Y from 'yjs';
import type { ParsedUpdate } from './parse.js';
import { hardenYjs } from './harden.js';
import { waitForWhatIsNeeded } from './pending.js';

// Cutting one item at many places in clock order is cheap only with shared content runs.
hardenYjs();

/**
 * Applies an update, first making the cuts its deletions will make in items
 * the document holds, all in one pass over each client's array of structs.
 *
 * Yjs cuts an item wherever an update deletes part of it, and puts each new
 * piece into the client's array of structs, moving everything after it. An
 * update of 65,536 deletions, each inside another of a client's 100,000
 * items, moved those arrays 65,536 times: 4.6 s to apply, from anyone who may
 * write the document. Cut here first, the pieces go into a new array in one
 * pass (0.3 s), and Yjs finds every place already cut.
 *
 * Only the cuts Yjs itself makes are made, in the same items (a live item
 * that starts before the place: Yjs never cuts a deleted one), and the
 * pieces are offered to Yjs to join again at the end of the transaction as
 * its own are, so the document and its encoding come out exactly as Yjs's.
 * (Cutting one item of many values is cheap in itself: content-runs.ts. The
 * places inserts cut are left to Yjs: which of them it cuts depends on what
 * it integrates.) Clients with fewer than CUTS_WORTH_ORDERING such places
 * are left to Yjs too: a few moves cost nothing. Afterwards, what pending
 * structs wait for is set to the clocks they need (pending.ts).
 */
export function applyParsedUpdate(doc: Y.Doc, update: Uint8Array, parsed: ParsedUpdate, origin?: unknown): void {
  const places = placesToCut(doc, parsed);
  if (!places.size) Y.applyUpdate(doc, update, origin);
  else {
    Y.transact(
      doc,
      (tr) => {
        for (const [client, clocks] of places) cutClient(tr, client, clocks);
        Y.applyUpdate(doc, update, origin);
      },
      origin,
      false,
    );
  }
  waitForWhatIsNeeded(doc);
}

const CUTS_WORTH_ORDERING = 16;

type Struct = Y.Item | Y.GC;

/** Per client, the clocks at which the update's deletions will cut live items the document holds: where there are enough to be worth it. */
function placesToCut(doc: Y.Doc, parsed: ParsedUpdate): Map<number, number[]> {
  const places = new Map<number, number[]>();
  for (const [client, ranges] of parsed.deletes) {
    const structs = doc.store.clients.get(client) as Struct[] | undefined;
    if (!structs || ranges.length * 2 < CUTS_WORTH_ORDERING) continue;
    const held = Y.getState(doc.store, client);
    const clocks: number[] = [];
    for (const [clock, len] of ranges) {
      for (const place of [clock, clock + len]) {
        if (place <= 0 || place >= held) continue;
        const struct = structs[Y.findIndexSS(structs, place)]!;
        if (struct instanceof Y.Item && !struct.deleted && struct.id.clock < place && place !== clocks[clocks.length - 1]) clocks.push(place);
      }
    }
    if (clocks.length >= CUTS_WORTH_ORDERING) places.set(client, clocks);
  }
  return places;
}

/**
 * Cuts `client`'s items at each of `clocks` (ascending, each inside a live
 * item), and puts the pieces in its array of structs. Each cut is made by
 * Yjs on an array holding only the piece being cut; the client's array is
 * whole again afterwards, also if Yjs throws.
 */
function cutClient(tr: Y.Transaction, client: number, clocks: readonly number[]): void {
  const store = tr.doc.store;
  const structs = store.clients.get(client) as Struct[];
  const out: Struct[] = [];
  /** The item being cut, as Yjs left it: the last piece, or the piece and its new right half. */
  let cutting: Struct[] = [];
  let copied = 0;
  try {
    for (let c = 0; c < clocks.length; ) {
      const index = Y.findIndexSS(structs, clocks[c]!);
      while (copied < index) out.push(structs[copied++]!);
      copied = index + 1;
      const item = structs[index] as Y.Item;
      const end = item.id.clock + item.length;
      cutting = [item];
      for (; c < clocks.length && clocks[c]! < end; c++) {
        store.clients.set(client, cutting);
        Y.getItemCleanStart(tr, Y.createID(client, clocks[c]!));
        out.push(cutting[0]!);
        cutting = [cutting[1]!];
      }
      out.push(cutting[0]!);
      cutting = [];
    }
  } finally {
    store.clients.set(client, out.concat(cutting, structs.slice(copied)));
  }
}
