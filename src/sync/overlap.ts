import { createHash } from 'node:crypto';
import type { FeedKey, NodeId } from '../types.js';
import { StructKind, type ParsedStruct } from '../yjs/parse.js';

/** Where a (client, clock range) came from: the envelope that first carried it here. */
export interface OverlapEntry {
  readonly from: number;
  readonly to: number;
  readonly feed: FeedKey;
  readonly seq: number;
  /** When it arrived here, in this node's order (entries stored before it was kept have none: the oldest). */
  readonly at?: number;
}

/**
 * Overlap index of one document: client id → clock ranges → envelope. Serves
 * the equivocation check (DESIGN.md §4): two different structs under one
 * (client, clock) are refused; identical ones (an app that failed over
 * between nodes) are harmless.
 */
export class OverlapIndex {
  /**
   * Per client: entries sorted by `from`, and `reach[i]`, the furthest `to`
   * among the first i + 1 of them (entries may overlap: identical structs
   * from two origins, or a refused version), so a search stops as soon as
   * nothing before can reach the range.
   */
  readonly #byClient = new Map<number, { readonly list: OverlapEntry[]; readonly reach: number[] }>();
  /** One copy of each feed key: entries are many (one per envelope and client), feeds few. */
  readonly #feeds = new Map<string, FeedKey>();

  add(client: number, added: OverlapEntry): void {
    let feed = this.#feeds.get(added.feed);
    if (feed === undefined) this.#feeds.set(added.feed, (feed = added.feed));
    const entry: OverlapEntry = { from: added.from, to: added.to, feed, seq: added.seq, ...(added.at !== undefined && { at: added.at }) };
    let slot = this.#byClient.get(client);
    if (!slot) this.#byClient.set(client, (slot = { list: [], reach: [] }));
    const { list, reach } = slot;
    // After the last entry that starts at or before it (appending is the usual case).
    let lo = 0;
    let hi = list.length;
    if (hi > 0 && list[hi - 1]!.from <= entry.from) lo = hi;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (list[mid]!.from <= entry.from) lo = mid + 1;
      else hi = mid;
    }
    list.splice(lo, 0, entry);
    reach.splice(lo, 0, Math.max(lo > 0 ? reach[lo - 1]! : 0, entry.to));
    // `reach` only grows along the list: after the new entry, it changes only where it was less than the entry's end.
    for (let j = lo + 1; j < reach.length && reach[j]! < entry.to; j++) reach[j] = entry.to;
  }

  /** Entries of `client` that intersect [from, to), in `from` order; a binary search, not a scan of them all. */
  find(client: number, from: number, to: number): OverlapEntry[] {
    const slot = this.#byClient.get(client);
    if (!slot) return [];
    const { list, reach } = slot;
    // The first entry that starts at or after `to`; before it, only entries that reach past `from` matter.
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (list[mid]!.from < to) lo = mid + 1;
      else hi = mid;
    }
    const out: OverlapEntry[] = [];
    for (let i = lo - 1; i >= 0 && reach[i]! > from; i--) if (list[i]!.to > from) out.push(list[i]!);
    return out.reverse();
  }
}

/** The origin id of a feed key `<iss>:<feed>`. */
export function feedOrigin(feed: FeedKey): NodeId {
  return feed.slice(0, feed.indexOf(':')) as NodeId;
}

/**
 * What one clock unit of a struct claims: its kind, logical origins, parent
 * (when stated) and content. Undefined for GC and deleted content, which
 * claim nothing and match any unit.
 */
export function unitAt(source: Uint8Array, s: ParsedStruct, clock: number): string | undefined {
  if (s.kind === StructKind.gc || s.kind === StructKind.deleted || s.kind === StructKind.skip) return undefined;
  const i = clock - s.clock;
  const origin = i === 0 ? s.origin : [s.client, clock - 1];
  const parent = origin === null && s.rightOrigin === null ? JSON.stringify([s.parent, s.parentSub]) : '';
  let unit: string;
  if (typeof s.content === 'string') unit = s.content[i] ?? '';
  else if (Array.isArray(s.content)) unit = JSON.stringify(s.content[i]) ?? 'undefined';
  else unit = createHash('sha256').update(source.subarray(s.contentStart, s.end)).digest('base64url');
  return `${s.kind}|${String(origin)}|${String(s.rightOrigin)}|${parent}|${unit}`;
}

/** Structs by client, each list sorted by clock (skips left out: they claim nothing). */
export function structsByClient(structs: readonly ParsedStruct[]): Map<number, ParsedStruct[]> {
  const out = new Map<number, ParsedStruct[]>();
  for (const s of structs) {
    if (s.kind === StructKind.skip) continue;
    const list = out.get(s.client);
    if (list) list.push(s);
    else out.set(s.client, [s]);
  }
  for (const list of out.values()) list.sort((a, b) => a.clock - b.clock);
  return out;
}
