import * as Y from 'yjs';
import type { NodeId } from '../types.js';
import type { Store } from '../store/store.js';
import { readEnvelope } from '../store/records.js';
import { parseUpdate, type ParsedStruct, type ParsedUpdate } from '../yjs/parse.js';
import { buildUpdate } from '../yjs/build.js';
import type { LiveDoc, RefusedPart } from './live-doc.js';
import { feedOrigin, structsByClient, unitAt } from './overlap.js';

/** A held envelope's update, its structs indexed by client and sorted by clock. */
type Held = { source: Uint8Array; byClient: Map<number, ParsedStruct[]> };

/**
 * The equivocation check (DESIGN.md §4): structs that overlap what a document
 * already holds under the same (client, clock) must be the same. A struct
 * that differs is left out of the update to apply, and reported with both
 * origins; identical ones (an app that failed over between nodes) pass.
 */
export async function filterOverlaps(store: Store, live: LiveDoc, parsed: ParsedUpdate, update: Uint8Array, origin: NodeId): Promise<{ update: Uint8Array; refused: RefusedPart[] }> {
  const refused: RefusedPart[] = [];
  const keep: ParsedStruct[] = [];
  const cache = new Map<string, Held>();
  for (const s of parsed.structs) {
    if (s.kind === 10) continue;
    const held = Y.getState(live.ydoc.store, s.client);
    if (s.clock >= held) {
      keep.push(s);
      continue;
    }
    const other = await mismatch(store, live, s, update, Math.min(held, s.clock + s.length), cache);
    if (other === undefined) keep.push(s);
    else refused.push({ client: s.client, from: s.clock, to: s.clock + s.length, reason: 'equivocation', origins: [origin, other] });
  }
  if (!refused.length) return { update, refused };
  const deletes = new Map([...parsed.deletes].map(([c, r]) => [c, r.map(([a, b]) => [a, b] as [number, number])]));
  return { update: buildUpdate(update, keep, deletes), refused };
}

/**
 * The origin of a held struct that differs from `s` in [s.clock, until), or
 * undefined if all match. Linear in the clock units compared (a held
 * envelope's structs are found by binary search), so a whole document sent
 * again costs about what it cost the first time.
 */
async function mismatch(store: Store, live: LiveDoc, s: ParsedStruct, source: Uint8Array, until: number, cache: Map<string, Held>): Promise<string | undefined> {
  for (const entry of live.overlap.find(s.client, s.clock, until)) {
    const k = `${entry.feed}#${entry.seq}`;
    let held = cache.get(k);
    if (!held) {
      const env = await readEnvelope(store, live.name, entry.feed, entry.seq);
      if (!env) continue;
      held = { source: env.update, byClient: structsByClient(parseUpdate(env.update).structs) };
      cache.set(k, held);
    }
    const list = held.byClient.get(s.client);
    if (!list) continue;
    const to = Math.min(until, entry.to);
    let clock = Math.max(s.clock, entry.from);
    for (let i = firstEndingAfter(list, clock); i < list.length && clock < to; i++) {
      const hs = list[i]!;
      clock = Math.max(clock, hs.clock);
      for (const end = Math.min(to, hs.clock + hs.length); clock < end; clock++) {
        const a = unitAt(source, s, clock);
        const b = unitAt(held.source, hs, clock);
        if (a !== undefined && b !== undefined && a !== b) return feedOrigin(entry.feed);
      }
    }
  }
  return undefined;
}

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
