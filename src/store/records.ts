import type { DocName, FeedKey } from '../types.js';
import { CorruptRecordError, Space, json, type Store, type StoreOp, type StoreReader } from './store.js';

/** A version vector: `<iss>:<feed>` → highest contiguous seq held. */
export type Vector = Record<string, number>;

/** An envelope as stored and forwarded: its origin's token and the update bytes it signs. */
export interface StoredEnvelope {
  readonly doc: DocName;
  readonly feed: FeedKey;
  readonly seq: number;
  readonly token: string;
  readonly update: Uint8Array;
}

const SEP = '\u0000';
const SEQ_WIDTH = 12;

export function seqKey(seq: number): string {
  return seq.toString(16).padStart(SEQ_WIDTH, '0');
}

export function envelopeKey(doc: DocName, feed: FeedKey, seq: number): string {
  return doc + SEP + feed + SEP + seqKey(seq);
}

export function encodeEnvelopeValue(token: string, update: Uint8Array): Uint8Array {
  const t = Buffer.from(token, 'utf8');
  const out = new Uint8Array(4 + t.length + update.length);
  new DataView(out.buffer).setUint32(0, t.length);
  out.set(t, 4);
  out.set(update, 4 + t.length);
  return out;
}

/** A stored envelope value (or snapshot); a value too short for its own length prefix (truncated on disk) is a CorruptRecordError naming `record`. */
export function decodeEnvelopeValue(value: Uint8Array, record?: { readonly space: Space; readonly key: string }): { token: string; update: Uint8Array } {
  const len = value.byteLength < 4 ? Infinity : new DataView(value.buffer, value.byteOffset, value.byteLength).getUint32(0);
  if (4 + len > value.byteLength) throw new CorruptRecordError('shorter than its own length prefix', record);
  return { token: Buffer.from(value.subarray(4, 4 + len)).toString('utf8'), update: value.subarray(4 + len) };
}

/** The ops that store envelopes and the vector that counts them, for one atomic batch. */
export function envelopeOps(envelopes: readonly StoredEnvelope[], vectors: ReadonlyMap<DocName, Vector>): StoreOp[] {
  const ops: StoreOp[] = envelopes.map((e) => ({
    type: 'put',
    space: Space.envelope,
    key: envelopeKey(e.doc, e.feed, e.seq),
    value: encodeEnvelopeValue(e.token, e.update),
  }));
  for (const [doc, vector] of vectors) ops.push({ type: 'put', space: Space.vector, key: doc, value: json.encode(vector) });
  return ops;
}

export async function readVector(store: StoreReader, doc: DocName): Promise<Vector> {
  const v = await store.getJson<unknown>(Space.vector, doc);
  return v === undefined ? {} : checkVector(v, doc);
}

/**
 * A stored vector as this node writes it: `<iss>:<feed>` → a seq from 1.
 * Anything else is refused, not read as an empty vector: the node would
 * serve the document without its envelopes, and sign its own next
 * envelopes over seqs it already signed (forking its feed).
 */
export function checkVector(v: unknown, doc: string): Vector {
  const bad = typeof v !== 'object' || v === null || Array.isArray(v) || Object.entries(v).some(([feed, seq]) => !feed.includes(':') || !Number.isSafeInteger(seq) || (seq as number) < 1);
  if (bad) throw new CorruptRecordError('not a version vector', { space: Space.vector, key: doc });
  return v as Vector;
}

export async function readEnvelope(store: StoreReader, doc: DocName, feed: FeedKey, seq: number): Promise<StoredEnvelope | undefined> {
  const v = await store.get(Space.envelope, envelopeKey(doc, feed, seq));
  return v === undefined ? undefined : { doc, feed, seq, ...decodeEnvelopeValue(v, { space: Space.envelope, key: envelopeKey(doc, feed, seq) }) };
}

/** A feed's envelopes for a doc in seq order, starting after `afterSeq`; a damaged one is a CorruptRecordError. */
export async function* readFeed(store: StoreReader, doc: DocName, feed: FeedKey, afterSeq = 0, limit?: number): AsyncGenerator<StoredEnvelope> {
  for await (const { seq, key, value } of feedRecords(store, doc, feed, afterSeq, limit)) yield { doc, feed, seq, ...decodeEnvelopeValue(value, { space: Space.envelope, key }) };
}

/** A feed's stored envelope records for a doc in seq order, undecoded (for `verify`, which lists a damaged one and goes on). */
export async function* feedRecords(store: StoreReader, doc: DocName, feed: FeedKey, afterSeq = 0, limit?: number): AsyncGenerator<{ seq: number; key: string; value: Uint8Array }> {
  const prefix = doc + SEP + feed + SEP;
  const opts = afterSeq > 0 ? { after: prefix + seqKey(afterSeq), ...(limit ? { limit } : {}) } : limit ? { limit } : {};
  for await (const [key, value] of store.entries(Space.envelope, prefix, opts)) yield { seq: parseInt(key.slice(prefix.length), 16), key, value };
}

/** Every document that has a vector, in name order. */
export async function* listDocs(store: StoreReader): AsyncGenerator<{ doc: DocName; vector: Vector }> {
  for await (const [key, value] of store.entries(Space.vector)) yield { doc: key as DocName, vector: checkVector(json.decode(value, { space: Space.vector, key }), key) };
}

export async function countDocs(store: Store): Promise<number> {
  let n = 0;
  for await (const _ of store.entries(Space.vector)) n++;
  return n;
}
