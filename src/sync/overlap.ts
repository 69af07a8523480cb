import { createHash } from 'node:crypto';
import type { FeedKey, NodeId } from '../types.js';
import { StructKind, type ParsedStruct } from '../yjs/parse.js';

/** Where a (client, clock range) came from: the envelope that first carried it here. */
export interface OverlapEntry {
  readonly from: number;
  readonly to: number;
  readonly feed: FeedKey;
  readonly seq: number;
}

/**
 * Overlap index of one document: client id → clock ranges → envelope. Serves
 * the equivocation check (DESIGN.md §4): two different structs under one
 * (client, clock) are refused; identical ones (an app that failed over
 * between nodes) are harmless.
 */
export class OverlapIndex {
  readonly #byClient = new Map<number, OverlapEntry[]>();
  /** One copy of each feed key: entries are many (one per envelope and client), feeds few. */
  readonly #feeds = new Map<string, FeedKey>();

  add(client: number, added: OverlapEntry): void {
    let feed = this.#feeds.get(added.feed);
    if (feed === undefined) this.#feeds.set(added.feed, (feed = added.feed));
    const entry: OverlapEntry = { from: added.from, to: added.to, feed, seq: added.seq };
    const list = this.#byClient.get(client) ?? [];
    let i = list.length;
    while (i > 0 && list[i - 1]!.from > entry.from) i--;
    list.splice(i, 0, entry);
    this.#byClient.set(client, list);
  }

  /** Entries of `client` that intersect [from, to). */
  find(client: number, from: number, to: number): OverlapEntry[] {
    const list = this.#byClient.get(client);
    if (!list) return [];
    return list.filter((e) => e.from < to && e.to > from);
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

/** The struct of `structs` that covers (client, clock), if any. */
export function structAt(structs: readonly ParsedStruct[], client: number, clock: number): ParsedStruct | undefined {
  return structs.find((s) => s.client === client && s.clock <= clock && clock < s.clock + s.length && s.kind !== StructKind.skip);
}
