import * as Y from 'yjs';
import { parseUpdate, type ParsedStruct, type ParsedUpdate } from '../yjs/parse.js';
import { buildUpdate, joinTyping, normalizeDeletes, type DeleteRanges } from '../yjs/build.js';
import { RangeIndex } from '../yjs/ranges.js';
import type { LiveDoc } from './live-doc.js';

/**
 * Computing what is new to a node in an app's update (DESIGN.md §4): the
 * doc's `update` event and `Y.diffUpdate` alone both sign too much.
 */

/** [client, from, to) */
export type Range = readonly [number, number, number];

/**
 * Exactly what is new to this node in an update: structs beyond its state
 * vector that are not pending here or refused, and deletions of items it
 * holds (or this update brings) that are not deleted yet. Deletions of items
 * it does not hold are deferred until they arrive. Undefined when nothing
 * is new.
 */
export function newPart(live: LiveDoc, update: Uint8Array, refused: readonly Range[], blockedDeletes?: readonly Range[], maxDeferred = 10_000, onOverflow?: () => void, original = parseUpdate(update)): { update: Uint8Array; parsed: ParsedUpdate } | undefined {
  const ydoc = live.ydoc;
  if (allNew(live, original) && refused.length === 0 && !live.parked.length) return original.structs.length ? { update, parsed: original } : undefined;
  const diff = Y.diffUpdate(update, Y.encodeStateVector(ydoc));
  const parsedDiff = parseUpdate(diff);
  const withheld = new RangeIndex([...pendingRanges(ydoc), ...parkedRanges(live), ...refused]);
  const kept = parsedDiff.structs.filter((s) => s.kind !== 10 && !withheld.overlaps(s.client, s.clock, s.clock + s.length));
  const brought = new RangeIndex(kept.map((s) => [s.client, s.clock, s.clock + s.length] as const));
  const deletes: DeleteRanges = new Map();
  const addDelete = (m: DeleteRanges, c: number, from: number, to: number) => {
    if (to > from) (m.get(c) ?? m.set(c, []).get(c)!).push([from, to - from]);
  };
  const consider = (client: number, clock: number, len: number) => {
    const state = Y.getState(ydoc.store, client);
    const end = clock + len;
    // Held in the doc: delete what is not deleted yet.
    for (const [from, to] of undeletedRuns(ydoc, client, clock, Math.min(end, state))) addDelete(deletes, client, from, to);
    // Brought by this update: delete it along with it. Neither held nor brought: defer until the items arrive.
    let cursor = Math.max(clock, state);
    for (const [from, to] of brought.within(client, cursor, end)) {
      if (from > cursor) addDelete(live.deferredDeletes, client, cursor, from);
      addDelete(deletes, client, Math.max(from, cursor), Math.min(to, end));
      cursor = Math.max(cursor, to);
    }
    if (cursor < end) addDelete(live.deferredDeletes, client, cursor, end);
  };
  for (const [client, ranges] of original.deletes) {
    for (const [clock, len] of ranges) {
      if (blockedDeletes && inDropped(blockedDeletes, client, clock, clock + len)) continue;
      consider(client, clock, len);
    }
  }
  // Deferred deletions whose items have arrived since, or arrive with this update.
  const deferred = live.deferredDeletes;
  live.deferredDeletes = new Map();
  for (const [client, ranges] of normalizeDeletes(deferred)) for (const [clock, len] of ranges) consider(client, clock, len);
  normalizeDeletes(live.deferredDeletes);
  if (boundDeferred(live, maxDeferred)) onOverflow?.();
  normalizeDeletes(deletes);
  if (kept.length === 0 && deletes.size === 0) return undefined;
  const signed = buildUpdate(diff, kept, deletes);
  return { update: signed, parsed: parseUpdate(signed) };
}

/**
 * The common case of typing: the update only adds structs, all beyond what
 * the doc holds, and nothing waits in the doc (no pending structs, no
 * deferred deletions). Then all of it is new, as it is.
 */
function allNew(live: LiveDoc, parsed: ParsedUpdate): boolean {
  const store = live.ydoc.store;
  if (parsed.deletes.size || live.deferredDeletes.size || store.pendingStructs || store.pendingDs) return false;
  const state = new Map<number, number>();
  for (const s of parsed.structs) {
    if (s.kind === 10) return false;
    let held = state.get(s.client);
    if (held === undefined) state.set(s.client, (held = Y.getState(store, s.client)));
    if (s.clock < held) return false;
  }
  return true;
}

/** Keeps deferred deletions within their bound (the oldest client's go first); true if any were dropped. */
function boundDeferred(live: LiveDoc, max: number): boolean {
  let n = 0;
  let dropped = false;
  for (const [client, ranges] of live.deferredDeletes) {
    n += ranges.length;
    if (n > max) {
      live.deferredDeletes.delete(client);
      dropped = true;
    }
  }
  return dropped;
}

/** Runs of clocks in [from, to) of `client` whose items are not deleted in the doc. */
export function undeletedRuns(ydoc: Y.Doc, client: number, from: number, to: number): [number, number][] {
  const runs: [number, number][] = [];
  if (to <= from) return runs;
  const structs = ydoc.store.clients.get(client);
  if (!structs) return runs;
  let i = Y.findIndexSS(structs, from);
  for (; i < structs.length; i++) {
    const s = structs[i]!;
    if (s.id.clock >= to) break;
    if (!s.deleted) {
      const a = Math.max(from, s.id.clock);
      const b = Math.min(to, s.id.clock + s.length);
      const last = runs[runs.length - 1];
      if (last && last[1] === a) last[1] = b;
      else runs.push([a, b]);
    }
  }
  return runs;
}

/** [client, from, to) ranges of the structs a document has parked in the store. */
export function parkedRanges(live: LiveDoc): (readonly [number, number, number])[] {
  return live.parked.flatMap((p) => p.ranges);
}

/** [client, from, to) ranges of the structs waiting in the doc's pending set. */
export function pendingRanges(ydoc: Y.Doc): [number, number, number][] {
  const pending = ydoc.store.pendingStructs;
  if (!pending) return [];
  // Read once per pending update (each local write asks, twice, while anything is pending): a megabyte of it took 0.1 s a read.
  const known = pendingRangesRead.get(pending.update);
  if (known) return known;
  const meta = Y.parseUpdateMetaV2(pending.update);
  const ranges = [...meta.from].map(([client, from]) => [client, from, meta.to.get(client) ?? from] as [number, number, number]);
  pendingRangesRead.set(pending.update, ranges);
  return ranges;
}

/** The ranges of each pending update, by the update (Yjs makes a new one whenever they change). */
const pendingRangesRead = new WeakMap<Uint8Array, [number, number, number][]>();

/**
 * For each client that pending deletions (a V2 update of deletions alone, as
 * Yjs keeps them) name, the first deleted clock this document does not hold:
 * once it is held, some of them can apply.
 */
export function firstMissingDeleted(ydoc: Y.Doc, deletions: Uint8Array): [number, number][] {
  const out: [number, number][] = [];
  for (const [client, items] of Y.decodeUpdateV2(deletions).ds.clients) {
    const state = Y.getState(ydoc.store, client);
    const item = items.find((d) => d.clock + d.len > state);
    if (item) out.push([client, Math.max(item.clock, state)]);
  }
  return out;
}

/** Whether [from, to) of `client` intersects any of the ranges. */
export function inDropped(ranges: readonly Range[], client: number, from: number, to: number): boolean {
  return ranges.some(([c, a, b]) => c === client && from < b && to > a);
}

/** Whether a struct's origin, right origin or parent item lies in a dropped range. */
export function dependsOnDropped(ranges: readonly Range[], st: ParsedStruct): boolean {
  const ids = [st.origin, st.rightOrigin, Array.isArray(st.parent) ? st.parent : null];
  return ids.some((id) => id !== null && inDropped(ranges, id[0]!, id[1]!, id[1]! + 1));
}

/**
 * An app's batch of keystrokes with each run of typing joined into one
 * struct (`joinTyping`), as this node's document would hold it. A run may
 * start at a struct whose position is known to be in a sequence: a stated
 * parent with no key, or an origin (else right origin) that this document
 * or the batch itself holds in a sequence.
 */
export function joinTypingIn(ydoc: Y.Doc, update: Uint8Array, parsed = parseUpdate(update), refused: readonly Range[] = []): Uint8Array {
  if (parsed.structs.length < 2) return update;
  // Structs that newPart leaves out (pending here, or refused) stay apart, so that what is new next to them is not left out with them.
  const withheld = new RangeIndex([...pendingRanges(ydoc), ...refused]);
  const mayStart = (s: ParsedStruct, inRuns: (id: readonly [number, number] | null) => boolean) => {
    if (s.parentSub !== null) return false;
    const neighbour = s.origin ?? s.rightOrigin;
    if (neighbour === null) return true;
    return inRuns(neighbour) || inSequence(ydoc, neighbour[0], neighbour[1]);
  };
  return joinTyping(update, parsed, mayStart, withheld.size ? (s) => withheld.overlaps(s.client, s.clock, s.clock + s.length) : undefined);
}

/** Whether the doc holds (client, clock) as an item of a sequence (not a map entry, not collected). */
function inSequence(ydoc: Y.Doc, client: number, clock: number): boolean {
  const structs = ydoc.store.clients.get(client);
  if (!structs || clock >= Y.getState(ydoc.store, client)) return false;
  const s = structs[Y.findIndexSS(structs, clock)];
  return s instanceof Y.Item && s.parentSub === null;
}

/**
 * Y.mergeUpdates is superlinear in the number of updates: merge in bounded
 * groups. It also relies on each update listing its clients from the highest
 * id down, as Yjs writes them, and leaves structs out of one that does not:
 * such updates (other encoders, several apps' keystrokes concatenated) are
 * put in that order first.
 */
export function mergeBounded(updates: Uint8Array[]): Uint8Array {
  if (updates.length === 1) return updates[0]!;
  let level = updates.map(inYjsOrder);
  while (level.length > 1) {
    const next: Uint8Array[] = [];
    for (let i = 0; i < level.length; i += MERGE_GROUP) next.push(Y.mergeUpdates(level.slice(i, i + MERGE_GROUP)));
    level = next;
  }
  return level[0]!;
}


const MERGE_GROUP = 64;

/** `update` with its clients from the highest id down (itself when they already are). */
function inYjsOrder(update: Uint8Array): Uint8Array {
  const parsed = parseUpdate(update);
  if (parsed.structs.every((s, i) => i === 0 || s.client <= parsed.structs[i - 1]!.client)) return update;
  const structs = [...parsed.structs].sort((a, b) => b.client - a.client || a.clock - b.clock);
  return buildUpdate(update, structs, parsed.deletes);
}
