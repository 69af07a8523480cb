import type { FeedKey, NodeId } from '../types.js';
import type { Store } from '../store/store.js';
import { readEnvelope } from '../store/records.js';
import { parseUpdate, StructKind, type ParsedStruct, type ParsedUpdate } from '../yjs/parse.js';
import { buildUpdate } from '../yjs/build.js';
import type { LiveDoc, RefusedPart } from './live-doc.js';
import { feedOrigin, structsByClient, unitAt, type OverlapEntry } from './overlap.js';

/** A held envelope's update, its structs indexed by client and sorted by clock. */
type Held = { source: Uint8Array; byClient: Map<number, ParsedStruct[]> };

/**
 * The equivocation check (DESIGN.md §4): structs that overlap what a document
 * already holds under the same (client, clock) must be the same. A struct
 * that differs is left out of the update to apply, and reported with both
 * origins; identical ones (an app that failed over between nodes) pass.
 *
 * Each clock is compared with the first envelope that carried it here (the
 * overlap index keeps when each arrived), not with every one: a copy of what
 * was kept passes though a refused version also carried those clocks, and a
 * document replayed from its envelopes (in feed order, not arrival order)
 * keeps the same version it kept when they arrived. `self` is the envelope
 * being applied, when it is one: where it is the first carrier, it is what
 * is kept.
 */
export async function filterOverlaps(store: Store, live: LiveDoc, parsed: ParsedUpdate, update: Uint8Array, origin: NodeId, self?: { readonly feed: FeedKey; readonly seq: number }): Promise<{ update: Uint8Array; refused: RefusedPart[] }> {
  const refused: RefusedPart[] = [];
  const keep: ParsedStruct[] = [];
  const cache = new Map<string, Held | null>();
  for (const s of parsed.structs) {
    if (s.kind === StructKind.skip) continue;
    // A GC or deleted run claims nothing and matches anything: no carrier need be read (its length may claim 2^40 clocks).
    const entries = claimsNothing(s) ? [] : live.overlap.find(s.client, s.clock, s.clock + s.length);
    if (!entries.length) {
      keep.push(s);
      continue;
    }
    const other = await mismatch(store, live, s, update, entries, self, cache);
    if (other === undefined) keep.push(s);
    else refused.push({ client: s.client, from: s.clock, to: s.clock + s.length, reason: 'equivocation', origins: [origin, other] });
  }
  if (!refused.length) return { update, refused };
  return { update: buildUpdate(update, keep, parsed.deletes), refused };
}

/**
 * The origin of the first carrier of a clock of `s` whose struct there
 * differs from `s`, or undefined if all match. Near linear in the carriers
 * and in the structs compared (a run of units inside two strings is one
 * comparison of slices), so a whole document sent again costs about what it
 * cost the first time.
 */
async function mismatch(store: Store, live: LiveDoc, s: ParsedStruct, source: Uint8Array, entries: readonly OverlapEntry[], self: { readonly feed: FeedKey; readonly seq: number } | undefined, cache: Map<string, Held | null>): Promise<string | undefined> {
  // The carriers, oldest first (entries kept before arrival order was, with no `at`, count as the oldest, in
  // index order), each with its envelope; one the store no longer holds is passed over for the next.
  const carriers: { entry: OverlapEntry; held: Held | undefined }[] = [];
  for (const entry of [...entries].sort((a, b) => (a.at ?? 0) - (b.at ?? 0))) {
    if (self && entry.feed === self.feed && entry.seq === self.seq) carriers.push({ entry, held: undefined });
    else {
      const held = await heldEnvelope(store, live, entry, cache);
      if (held) carriers.push({ entry, held });
    }
  }
  // A sweep over the clocks of `s`: carriers join as the clock reaches their start, and the first carrier
  // (the oldest that covers the clock) is the top of a heap ordered by arrival, expired ones dropped as met.
  const end = s.clock + s.length;
  const byFrom = carriers.map((_, i) => i).sort((a, b) => carriers[a]!.entry.from - carriers[b]!.entry.from);
  const active = new MinHeap();
  let next = 0;
  for (let clock = s.clock; clock < end; ) {
    while (next < byFrom.length && carriers[byFrom[next]!]!.entry.from <= clock) active.push(byFrom[next++]!);
    while (active.size && carriers[active.top]!.entry.to <= clock) active.pop();
    const nextStart = next < byFrom.length ? carriers[byFrom[next]!]!.entry.from : Infinity;
    if (!active.size) {
      // Not carried here yet: new content, up to where some carrier starts.
      clock = Math.min(end, nextStart);
      continue;
    }
    const { entry, held } = carriers[active.top]!;
    // The first carrier's run of clocks: up to its end, or to where another carrier starts (it may be older).
    const until = Math.min(end, entry.to, nextStart);
    // `held` is undefined for the envelope being applied itself: where it came first, it is what is kept.
    const list = held?.byClient.get(s.client);
    if (held && list && differs(s, source, held, list, clock, until)) return feedOrigin(entry.feed);
    clock = until;
  }
  return undefined;
}

/** Whether `s` (in `source`) and the held envelope's structs claim anything different over [from, until). */
function differs(s: ParsedStruct, source: Uint8Array, held: Held, list: readonly ParsedStruct[], from: number, until: number): boolean {
  let c = from;
  for (let i = firstEndingAfter(list, c); i < list.length && c < until; i++) {
    const hs = list[i]!;
    c = Math.max(c, hs.clock);
    const stop = Math.min(until, hs.clock + hs.length);
    // A held GC or deleted run claims nothing and matches anything: its length is only a number, which may be 2^40.
    if (claimsNothing(hs)) {
      c = stop;
      continue;
    }
    for (; c < stop; c++) {
      // Inside both structs, units differ only in content (the origin is the unit before, the right origin and kind the struct's).
      if (c > s.clock && c > hs.clock && s.kind === hs.kind && String(s.rightOrigin) === String(hs.rightOrigin) && typeof s.content === typeof hs.content && s.content !== null && hs.content !== null) {
        if (!sameContent(s, hs, c, stop)) return true;
        c = stop;
        break;
      }
      const a = unitAt(source, s, c);
      const b = unitAt(held.source, hs, c);
      if (a !== undefined && b !== undefined && a !== b) return true;
    }
  }
  return false;
}

/** Whether two structs hold the same content units over clocks [from, to), inside both. */
function sameContent(a: ParsedStruct, b: ParsedStruct, from: number, to: number): boolean {
  if (typeof a.content === 'string' && typeof b.content === 'string') return a.content.slice(from - a.clock, to - a.clock) === b.content.slice(from - b.clock, to - b.clock);
  const [x, y] = [a.content as readonly unknown[], b.content as readonly unknown[]];
  for (let c = from; c < to; c++) if ((JSON.stringify(x[c - a.clock]) ?? 'undefined') !== (JSON.stringify(y[c - b.clock]) ?? 'undefined')) return false;
  return true;
}

/** A binary min-heap of carrier indexes (their arrival order). */
class MinHeap {
  readonly #items: number[] = [];

  get size(): number {
    return this.#items.length;
  }

  get top(): number {
    return this.#items[0]!;
  }

  push(x: number): void {
    const a = this.#items;
    a.push(x);
    for (let i = a.length - 1; i > 0; ) {
      const p = (i - 1) >> 1;
      if (a[p]! <= a[i]!) break;
      [a[p], a[i]] = [a[i]!, a[p]!];
      i = p;
    }
  }

  pop(): void {
    const a = this.#items;
    const last = a.pop()!;
    if (!a.length) return;
    a[0] = last;
    for (let i = 0; ; ) {
      const [l, r] = [2 * i + 1, 2 * i + 2];
      let m = i;
      if (l < a.length && a[l]! < a[m]!) m = l;
      if (r < a.length && a[r]! < a[m]!) m = r;
      if (m === i) break;
      [a[m], a[i]] = [a[i]!, a[m]!];
      i = m;
    }
  }
}

/** A held envelope, parsed and indexed once per check; null when the store no longer has it. */
async function heldEnvelope(store: Store, live: LiveDoc, entry: OverlapEntry, cache: Map<string, Held | null>): Promise<Held | null> {
  const k = `${entry.feed}#${entry.seq}`;
  let held = cache.get(k);
  if (held === undefined) {
    const env = await readEnvelope(store, live.name, entry.feed, entry.seq);
    held = env ? { source: env.update, byClient: structsByClient(parseUpdate(env.update).structs) } : null;
    cache.set(k, held);
  }
  return held;
}

const claimsNothing = (s: ParsedStruct) => s.kind === StructKind.gc || s.kind === StructKind.deleted || s.kind === StructKind.skip;

/** The index of the first struct of `list` (sorted by clock) that ends after `clock`. */
function firstEndingAfter(list: readonly ParsedStruct[], clock: number): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const m = list[mid]!;
    if (m.clock + m.length <= clock) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
