import type { KeyObject } from 'node:crypto';
import { importPublicJwk } from '../identity/keys.js';
import type { DocName, FeedKey, NodeId, PublicJwk } from '../types.js';
import { CorruptRecordError, Space, type StoreReader } from '../store/store.js';
import { decodeEnvelopeValue, feedRecords, readVector, type Vector } from '../store/records.js';
import { parseUpdate, structRanges } from '../yjs/parse.js';
import { ENVELOPE_LIMITS, readEnvelopeClaims, verifyEnvelope } from './envelope.js';
import { feedOrigin } from './overlap.js';

export interface VerifyProblem {
  readonly doc: string;
  readonly feed: string;
  readonly seq: number | null;
  readonly problem: string;
}

export interface VerifyReport {
  readonly ok: boolean;
  readonly docs: number;
  readonly envelopes: number;
  readonly problems: VerifyProblem[];
}

/**
 * Re-checks every stored envelope (DESIGN.md §8): signature with its
 * origin's key (peers file, this node, or a key remembered in the store),
 * hash, claims against where it is stored, struct ranges, that the update
 * decodes, and seq continuity up to the vector. A running node passes a
 * snapshot of its store, so that writes made meanwhile are not mistaken for
 * envelopes beyond a vector.
 */
export async function verifyStore(store: StoreReader, knownKeys: (origin: NodeId) => PublicJwk | undefined): Promise<VerifyReport> {
  const problems: VerifyProblem[] = [];
  const keys = new Map<string, KeyObject | null>();
  const keyFor = async (origin: NodeId): Promise<KeyObject | null> => {
    if (!keys.has(origin)) {
      const jwk = knownKeys(origin) ?? (await store.getJson<PublicJwk>(Space.originKey, origin));
      keys.set(origin, jwk ? importPublicJwk(jwk) : null);
    }
    return keys.get(origin)!;
  };
  let docs = 0;
  let envelopes = 0;
  for await (const [key] of store.entries(Space.vector)) {
    const doc = key as DocName;
    docs++;
    let vector: Vector;
    try {
      vector = await readVector(store, doc);
    } catch (err) {
      // Listed with the rest, not thrown: one damaged record must not hide every other problem.
      if (!(err instanceof CorruptRecordError)) throw err;
      problems.push({ doc, feed: '', seq: null, problem: err.message });
      continue;
    }
    for (const [feed, top] of Object.entries(vector) as [FeedKey, number][]) {
      const origin = feedOrigin(feed);
      const key = await keyFor(origin);
      let expected = 1;
      for await (const { seq, key: recordKey, value } of feedRecords(store, doc, feed)) {
        envelopes++;
        if (seq !== expected) problems.push({ doc, feed, seq: expected, problem: `missing envelopes ${expected}..${seq - 1}` });
        expected = seq + 1;
        let p: string | undefined;
        try {
          const { token, update } = decodeEnvelopeValue(value, { space: Space.envelope, key: recordKey });
          p = checkOne(doc, feed, seq, token, update, key);
        } catch (err) {
          if (!(err instanceof CorruptRecordError)) throw err;
          p = err.message;
        }
        if (p) problems.push({ doc, feed, seq, problem: p });
      }
      if (expected - 1 < top) problems.push({ doc, feed, seq: expected, problem: `vector counts ${top} but envelopes stop at ${expected - 1}` });
      if (expected - 1 > top) problems.push({ doc, feed, seq: top + 1, problem: `envelopes beyond the vector (${top})` });
    }
  }
  return { ok: problems.length === 0, docs, envelopes, problems };
}

function checkOne(doc: DocName, feed: FeedKey, seq: number, token: string, update: Uint8Array, key: KeyObject | null): string | undefined {
  try {
    const claims = readEnvelopeClaims(token);
    if (claims.doc !== doc) return `claims doc ${JSON.stringify(claims.doc)} but stored under ${JSON.stringify(doc)}`;
    if (`${claims.iss}:${claims.feed}` !== feed) return 'claims another feed than the one it is stored under';
    if (claims.seq !== seq) return `claims seq ${claims.seq}`;
    if (!key) return `no key known for origin ${claims.iss}`;
    verifyEnvelope(token, update, key);
    // Within what one envelope may carry: a peer refuses more as a forgery.
    const ranges = structRanges(parseUpdate(update, ENVELOPE_LIMITS).structs);
    if (JSON.stringify(ranges) !== JSON.stringify(claims.clients)) return 'clients claim does not match the structs';
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/** A plain-text rendering of a report, one problem per line. */
export function formatReport(r: VerifyReport): string {
  const head = `${r.ok ? 'ok' : 'FAILED'}: ${r.docs} documents, ${r.envelopes} envelopes, ${r.problems.length} problems`;
  return [head, ...r.problems.map((p) => `  ${p.doc} ${p.feed}${p.seq === null ? '' : ` #${p.seq}`}: ${p.problem}`)].join('\n');
}
