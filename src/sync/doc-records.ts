import { Space, json, type StoreOp } from '../store/store.js';
import { structRanges, parseUpdate, type ParsedStruct, type ParsedUpdate } from '../yjs/parse.js';
import { buildUpdate } from '../yjs/build.js';
import { checkVector, decodeEnvelopeValue, encodeEnvelopeValue, type StoredEnvelope, type Vector } from '../store/records.js';
import type { LiveDoc } from './live-doc.js';

/** What a document keeps in the store besides its envelopes: deferred deletions, overlap index entries, snapshots. */

export function deferredKey(live: LiveDoc): string {
  return JSON.stringify([...live.deferredDeletes]);
}

/** The op that stores (or clears) a document's deferred deletions. */
export function deferredOp(live: LiveDoc): StoreOp {
  const key = `deferred\u0000${live.name}`;
  return live.deferredDeletes.size ? { type: 'put', space: Space.parked, key, value: json.encode([...live.deferredDeletes]) } : { type: 'del', space: Space.parked, key };
}

/** Client ranges per envelope: keeps every token well under its size limit. */
export const MAX_RANGES_PER_ENVELOPE = 400;

export function splitByClients(update: Uint8Array, parsed: ParsedUpdate): { update: Uint8Array; parsed: ParsedUpdate }[] {
  if (structRanges(parsed.structs).length <= MAX_RANGES_PER_ENVELOPE) return [{ update, parsed }];
  const byClient = new Map<number, ParsedStruct[]>();
  for (const st of parsed.structs) if (st.kind !== 10) (byClient.get(st.client) ?? byClient.set(st.client, []).get(st.client)!).push(st);
  const groups: ParsedStruct[][] = [];
  let current: ParsedStruct[] = [];
  let ranges = 0;
  for (const structs of byClient.values()) {
    const n = structRanges(structs).length;
    if (ranges + n > MAX_RANGES_PER_ENVELOPE && current.length) {
      groups.push(current);
      current = [];
      ranges = 0;
    }
    current.push(...structs);
    ranges += n;
  }
  groups.push(current);
  return groups.map((g, i) => {
    const part = buildUpdate(update, g, i === groups.length - 1 ? parsed.deletes : new Map());
    return { update: part, parsed: parseUpdate(part) };
  });
}

/**
 * The overlap index entries of an envelope, as store ops: one per client
 * range, keyed by document, client, first clock and the envelope (two
 * envelopes that carry the same clocks each keep theirs), with `at`, when
 * it arrived here; and `index`, which adds them to the document's own
 * index, to call once they are durable: one that counted an envelope a
 * failed write left out would check later structs against it.
 */
export function stageOverlaps(live: LiveDoc, env: StoredEnvelope, parsed: ParsedUpdate, at: number): { ops: StoreOp[]; index: () => void } {
  const entries = structRanges(parsed.structs).map(([client, from, to]) => [client, { from, to, feed: env.feed, seq: env.seq, at }] as const);
  const ops: StoreOp[] = entries.map(([client, entry]) => ({
    type: 'put',
    space: Space.overlap,
    key: `${live.name}\u0000${client.toString(16).padStart(14, '0')}\u0000${entry.from.toString(16).padStart(14, '0')}\u0000${env.feed}\u0000${env.seq}`,
    value: json.encode(entry),
  }));
  return { ops, index: () => entries.forEach(([client, entry]) => live.overlap.add(client, entry)) };
}

/** A copy of a document's deferred deletions, to put back if the write that changed them fails. */
export function copyDeferred(live: LiveDoc): LiveDoc['deferredDeletes'] {
  return new Map([...live.deferredDeletes].map(([client, ranges]) => [client, ranges.map(([clock, len]) => [clock, len] as [number, number])]));
}

/** A snapshot: the Yjs state and the vector it covers, stored as the vector's JSON then the state. */
export function encodeSnapshot(vector: Vector, state: Uint8Array): Uint8Array {
  return encodeEnvelopeValue(JSON.stringify(vector), state);
}

/** A stored snapshot; throws if it is not one (its vector is checked like a stored vector). */
export function decodeSnapshot(bytes: Uint8Array, doc: string): { vector: Vector; state: Uint8Array } {
  const { token, update } = decodeEnvelopeValue(bytes, { space: Space.snapshot, key: doc });
  return { vector: checkVector(JSON.parse(token), doc), state: update };
}
