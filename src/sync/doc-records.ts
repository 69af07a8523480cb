import { CorruptRecordError, Space, json, type StoreOp, type StoreReader } from '../store/store.js';
import { crowdOf, structRanges, parseUpdate, StructKind, type ParsedStruct, type ParsedUpdate, type UpdateLimits } from '../yjs/parse.js';
import { buildUpdate, type ReadonlyDeleteRanges } from '../yjs/build.js';
import { ENVELOPE_LIMITS, updateHash, updateMatchesToken } from './envelope.js';
import { checkVector, decodeEnvelopeValue, encodeEnvelopeValue, envelopeKey, readFeed, type StoredEnvelope, type Vector } from '../store/records.js';
import type { DocName, FeedKey } from '../types.js';
import type { LiveDoc } from './live-doc.js';

/** What a document keeps in the store besides its envelopes: deferred deletions, overlap index entries, snapshots. */

/**
 * A feed's envelopes as readFeed reads them, each checked against the hash
 * its token states: a record damaged so that it still decodes is a
 * CorruptRecordError as well, never applied or sent.
 */
export async function* readIntactFeed(store: StoreReader, doc: DocName, feed: FeedKey, afterSeq = 0, limit?: number): AsyncGenerator<StoredEnvelope> {
  for await (const env of readFeed(store, doc, feed, afterSeq, limit)) {
    if (!updateMatchesToken(env.token, env.update)) throw new CorruptRecordError('its update is not the one its token names (h)', { space: Space.envelope, key: envelopeKey(doc, feed, env.seq) });
    yield env;
  }
}

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

/**
 * A local change as the envelopes it is signed in: one, unless it carries
 * more client ranges than fit one token, or more structs or delete ranges
 * than one envelope may (ENVELOPE_LIMITS). Structs are cut in clock order of
 * each client; the delete set goes in the last envelope, or in envelopes of
 * its own after the structs when it is larger than one may carry.
 */
export function splitForEnvelopes(update: Uint8Array, parsed: ParsedUpdate, limits: UpdateLimits = ENVELOPE_LIMITS): { update: Uint8Array; parsed: ParsedUpdate }[] {
  const deleteRanges = [...parsed.deletes.values()].reduce((n, r) => n + r.length, 0);
  // No client puts two items at one place (app updates are refused that do): with at most `crowd` clients in each envelope, no place has more.
  const crowd = limits.crowd ?? Infinity;
  const clientsPerPart = parsed.structs.length > crowd && crowdOf(parsed.structs) > crowd ? crowd : Infinity;
  if (parsed.structs.length <= limits.structs && deleteRanges <= limits.deleteRanges && clientsPerPart === Infinity && structRanges(parsed.structs).length <= MAX_RANGES_PER_ENVELOPE) return [{ update, parsed }];
  const byClient = new Map<number, ParsedStruct[]>();
  for (const st of parsed.structs) if (st.kind !== StructKind.skip) (byClient.get(st.client) ?? byClient.set(st.client, []).get(st.client)!).push(st);
  const groups: ParsedStruct[][] = [];
  let current: ParsedStruct[] = [];
  // What the group's update will declare: its structs and the Skips between them; and its client ranges.
  let declared = 0;
  let ranges = 0;
  let clients = 0;
  for (const structs of byClient.values()) {
    structs.sort((a, b) => a.clock - b.clock);
    if (clients === clientsPerPart) {
      groups.push(current);
      [current, declared, ranges, clients] = [[], 0, 0, 0];
    }
    clients++;
    let prev: ParsedStruct | undefined;
    for (const st of structs) {
      let joins = prev !== undefined && st.clock === prev.clock + prev.length;
      if (current.length && (declared + (prev === undefined || joins ? 1 : 2) > limits.structs || (!joins && ranges === MAX_RANGES_PER_ENVELOPE))) {
        groups.push(current);
        [current, declared, ranges, clients, prev, joins] = [[], 0, 0, 1, undefined, false];
      }
      declared += prev === undefined || joins ? 1 : 2;
      if (!joins) ranges++;
      current.push(st);
      prev = st;
    }
  }
  if (current.length) groups.push(current);
  const deletes = deleteRanges <= limits.deleteRanges ? [parsed.deletes] : chunkDeletes(parsed.deletes, limits.deleteRanges);
  const parts = groups.map((g, i) => buildUpdate(update, g, i === groups.length - 1 && deletes.length === 1 ? deletes[0]! : new Map()));
  if (deletes.length > 1 || !groups.length) parts.push(...deletes.map((ds) => buildUpdate(update, [], ds)));
  return parts.map((part) => ({ update: part, parsed: parseUpdate(part) }));
}

/** A delete set cut into sets of at most `max` ranges each. */
function chunkDeletes(deletes: ReadonlyDeleteRanges, max: number): ReadonlyDeleteRanges[] {
  const out: Map<number, (readonly [number, number])[]>[] = [new Map()];
  let n = 0;
  for (const [client, ranges] of deletes) {
    for (const range of ranges) {
      if (n === max) {
        out.push(new Map());
        n = 0;
      }
      const last = out[out.length - 1]!;
      (last.get(client) ?? last.set(client, []).get(client)!).push(range);
      n++;
    }
  }
  return out;
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

/**
 * A snapshot: the Yjs state, the vector it covers and the SHA-256 of the
 * state, stored as `{"v":vector,"h":hash}` then the state. (A vector alone
 * in place of that object is a snapshot written before the hash was.)
 */
export function encodeSnapshot(vector: Vector, state: Uint8Array): Uint8Array {
  return encodeEnvelopeValue(JSON.stringify({ v: vector, h: updateHash(state) }), state);
}

/** A stored snapshot; throws if it is not one, or if its state is not the one its hash names (its vector is checked like a stored vector). */
export function decodeSnapshot(bytes: Uint8Array, doc: string): { vector: Vector; state: Uint8Array } {
  const record = { space: Space.snapshot, key: doc };
  const { token, update } = decodeEnvelopeValue(bytes, record);
  let head: unknown;
  try {
    head = JSON.parse(token);
  } catch (err) {
    throw new CorruptRecordError(`not valid JSON (${(err as Error).message})`, record);
  }
  // Feed keys hold a ':', so a vector never has the keys "v" and "h".
  if (head && typeof head === 'object' && 'v' in head && 'h' in head) {
    if (head.h !== updateHash(update)) throw new CorruptRecordError('its state is not the one its hash names', record);
    return { vector: checkVector(head.v, doc), state: update };
  }
  return { vector: checkVector(head, doc), state: update };
}
