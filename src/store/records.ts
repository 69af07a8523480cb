import type { DocName, FeedKey } from '../types.js';
import { Space, json, type Store, type StoreOp, type StoreReader } from './store.js';

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

export function decodeEnvelopeValue(value: Uint8Array): { token: string; update: Uint8Array } {
  const len = new DataView(value.buffer, value.byteOffset, value.byteLength).getUint32(0);
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
  return (await store.getJson<Vector>(Space.vector, doc)) ?? {};
}

export async function readEnvelope(store: StoreReader, doc: DocName, feed: FeedKey, seq: number): Promise<StoredEnvelope | undefined> {
  const v = await store.get(Space.envelope, envelopeKey(doc, feed, seq));
  return v === undefined ? undefined : { doc, feed, seq, ...decodeEnvelopeValue(v) };
}

/** A feed's envelopes for a doc in seq order, starting after `afterSeq`. */
export async function* readFeed(store: StoreReader, doc: DocName, feed: FeedKey, afterSeq = 0, limit?: number): AsyncGenerator<StoredEnvelope> {
  const prefix = doc + SEP + feed + SEP;
  const opts = afterSeq > 0 ? { after: prefix + seqKey(afterSeq), ...(limit ? { limit } : {}) } : limit ? { limit } : {};
  for await (const [key, value] of store.entries(Space.envelope, prefix, opts)) {
    const seq = parseInt(key.slice(prefix.length), 16);
    yield { doc, feed, seq, ...decodeEnvelopeValue(value) };
  }
}

/** Every document that has a vector, in name order. */
export async function* listDocs(store: StoreReader): AsyncGenerator<{ doc: DocName; vector: Vector }> {
  for await (const [key, value] of store.entries(Space.vector)) yield { doc: key as DocName, vector: json.decode<Vector>(value) };
}

export async function countDocs(store: Store): Promise<number> {
  let n = 0;
  for await (const _ of store.entries(Space.vector)) n++;
  return n;
}
