import * as Y from 'yjs';
import type { NodeId } from '../types.js';
import type { Store } from '../store/store.js';
import { readEnvelope } from '../store/records.js';
import { parseUpdate, type ParsedStruct, type ParsedUpdate } from '../yjs/parse.js';
import { buildUpdate } from '../yjs/build.js';
import type { LiveDoc, RefusedPart } from './live-doc.js';
import { feedOrigin, structAt, unitAt } from './overlap.js';

type Held = { source: Uint8Array; parsed: ParsedUpdate };

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

/** The origin of a held struct that differs from `s` in [s.clock, until), or undefined if all match. */
async function mismatch(store: Store, live: LiveDoc, s: ParsedStruct, source: Uint8Array, until: number, cache: Map<string, Held>): Promise<string | undefined> {
  for (const entry of live.overlap.find(s.client, s.clock, until)) {
    const k = `${entry.feed}#${entry.seq}`;
    let held = cache.get(k);
    if (!held) {
      const env = await readEnvelope(store, live.name, entry.feed, entry.seq);
      if (!env) continue;
      held = { source: env.update, parsed: parseUpdate(env.update) };
      cache.set(k, held);
    }
    const from = Math.max(s.clock, entry.from);
    const to = Math.min(until, entry.to);
    for (let clock = from; clock < to; clock++) {
      const hs = structAt(held.parsed.structs, s.client, clock);
      if (!hs) continue;
      const a = unitAt(source, s, clock);
      const b = unitAt(held.source, hs, clock);
      if (a !== undefined && b !== undefined && a !== b) return feedOrigin(entry.feed);
    }
  }
  return undefined;
}
