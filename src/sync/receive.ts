import type { KeyObject } from 'node:crypto';
import type { Logger } from 'pino';
import type { DocName, FeedKey, NodeId } from '../types.js';
import { feedKey } from '../types.js';
import { CorruptRecordError, Space, json, type StoreOp } from '../store/store.js';
import { decodeEnvelopeValue, encodeEnvelopeValue, envelopeKey, envelopeOps, readEnvelope, type StoredEnvelope, type Vector } from '../store/records.js';
import { parseUpdate, structRanges, type ParsedUpdate } from '../yjs/parse.js';
import { applyParsedUpdate } from '../yjs/cuts.js';
import { BAD_HASH, BAD_SIGNATURE, ENVELOPE_LIMITS, EnvelopeError, readEnvelopeClaims, signatureParts, type EnvelopeClaims } from './envelope.js';
import type { Verifier, Verdict } from './verifier.js';
import type { HeldEnvelope, LiveDoc } from './live-doc.js';
import { feedOrigin } from './overlap.js';
import { filterOverlaps } from './equivocation.js';
import { inDropped } from './new-part.js';
import { stageOverlaps } from './doc-records.js';
import type { DocsContext, DocsOptions } from './docs-context.js';
import type { LoadedDocs } from './loaded-docs.js';
import type { LocalWrites } from './local-writes.js';
import type { Parking } from './parking.js';
import type { HeldEnvelopes } from './held.js';

/** Why a received envelope was not accepted. */
export type RefusalReason = 'forgery' | 'not_wanted' | 'not_exchangeable' | 'conflict';

export interface ReceiveOutcome {
  accepted: number;
  duplicates: number;
  refused: { doc: DocName; feed: FeedKey; seq: number; reason: RefusalReason; detail: string }[];
  /** Documents with a gap that could not be held: the sender should be asked again. */
  rewant: Set<DocName>;
}

/** A received envelope whose claims and permissions passed, waiting for its signature check. */
interface Candidate {
  readonly item: { token: string; update: Uint8Array };
  readonly claims: EnvelopeClaims;
  readonly key: KeyObject;
  readonly input: Buffer;
  readonly sig: Buffer;
}

/** What the first pass over a document's received envelopes keeps, in order, and the vector that counts them. */
interface Triage {
  accepted: { env: StoredEnvelope; parsed: ParsedUpdate }[];
  dropped: StoredEnvelope[];
  vector: Vector;
}

/** The collaborators a `Receiver` works with, all owned by `Docs`. */
export interface ReceiverParts {
  readonly docs: LoadedDocs;
  readonly local: LocalWrites;
  readonly parking: Parking;
  readonly held: HeldEnvelopes;
  readonly verifier: Verifier;
}

/**
 * Envelopes received from peers (DESIGN.md §4): checked (claims, permissions,
 * signature, hash, struct ranges), kept in seq order per feed (a gap is held,
 * bounded), stored, then applied minus any part refused as an equivocation.
 */
export class Receiver {
  readonly #ctx: DocsContext;
  readonly #o: DocsOptions;
  readonly #log: Logger;
  readonly #p: ReceiverParts;
  /** Origins whose public key is already remembered in the store (for verify after removal). */
  readonly #remembered = new Set<string>();

  constructor(ctx: DocsContext, parts: ReceiverParts) {
    this.#ctx = ctx;
    this.#o = ctx.options;
    this.#log = ctx.log;
    this.#p = parts;
  }

  /** Reads which origins' keys the store already remembers. */
  async loadRemembered(): Promise<void> {
    for await (const [key] of this.#o.store.entries(Space.originKey)) this.#remembered.add(key);
  }

  /**
   * Checks, stores and applies envelopes received from a peer (DESIGN.md §4).
   * Forgery (bad signature, hash, claims or bytes) is reported for the caller
   * to count against the sender; policy refusals are "not wanted".
   */
  async receive(from: NodeId, items: readonly { token: string; update: Uint8Array }[]): Promise<ReceiveOutcome> {
    const started = performance.now();
    const out = await this.#receive(from, items);
    this.#o.timings?.receive((performance.now() - started) / 1000);
    return out;
  }

  async #receive(from: NodeId, items: readonly { token: string; update: Uint8Array }[]): Promise<ReceiveOutcome> {
    const out: ReceiveOutcome = { accepted: 0, duplicates: 0, refused: [], rewant: new Set() };
    const candidates: Candidate[] = [];
    for (const item of items) {
      const c = this.#precheck(from, item, out);
      if (c) candidates.push(c);
    }
    const verdicts = await this.#p.verifier.verify(candidates.map((c) => ({ input: c.input, sig: c.sig, key: c.key, update: c.item.update, h: c.claims.h })));
    const byDoc = new Map<DocName, HeldEnvelope[]>();
    for (const [i, c] of candidates.entries()) {
      const checked = this.#finishCheck(c, verdicts[i], out);
      if (checked) (byDoc.get(checked.claims.doc) ?? byDoc.set(checked.claims.doc, []).get(checked.claims.doc)!).push(checked);
    }
    await Promise.all(
      [...byDoc].map(([doc, envs]) =>
        this.#p.docs.withLive(doc, (live) => this.#accept(live, from, envs, out)).catch((err: unknown) => {
          // A document with a damaged record cannot take them in; the others do. They are neither accepted nor refused: offered again later.
          if (!(err instanceof CorruptRecordError)) throw err;
          this.#log.error({ err, doc, peer: from, envelopes: envs.length }, 'envelopes not taken in: a record of their document is damaged in the store');
        }),
      ),
    );
    return out;
  }

  /** The checks before the signature: the claims' shape, and whether this peer and origin may send and write the document. */
  #precheck(from: NodeId, item: { token: string; update: Uint8Array }, out: ReceiveOutcome): Candidate | undefined {
    let claims: EnvelopeClaims;
    try {
      claims = readEnvelopeClaims(item.token);
    } catch (err) {
      out.refused.push({ doc: '?' as DocName, feed: '?' as FeedKey, seq: 0, reason: 'forgery', detail: (err as Error).message });
      return undefined;
    }
    const feed = feedKey(claims.iss, claims.feed);
    const refuse = (reason: RefusalReason, detail: string) => void out.refused.push({ doc: claims.doc, feed, seq: claims.seq, reason, detail });
    if (!this.#o.policy.mayExchange(from, claims.doc)) return refuse('not_exchangeable', 'the sending peer may not exchange this document');
    const key = this.#o.policy.authorKey(claims.iss);
    if (!key) return refuse('not_wanted', 'origin not trusted here');
    if (!this.#o.policy.mayWrite(claims.iss, claims.doc)) return refuse('not_wanted', 'origin may not write this document');
    try {
      return { item, claims, key, ...signatureParts(item.token) };
    } catch (err) {
      return refuse('forgery', (err as Error).message);
    }
  }

  /** After the signature: the update must parse and carry exactly the struct ranges its claims state. */
  #finishCheck(c: Candidate, verdict: Verdict | undefined, out: ReceiveOutcome): HeldEnvelope | undefined {
    const { item, claims } = c;
    try {
      if (verdict === 'hash') throw new EnvelopeError(BAD_HASH);
      if (verdict !== 'ok') throw new EnvelopeError(BAD_SIGNATURE);
      const parsed = parseUpdate(item.update, ENVELOPE_LIMITS);
      const ranges = structRanges(parsed.structs);
      if (JSON.stringify(ranges) !== JSON.stringify(claims.clients)) throw new EnvelopeError('clients claim does not match the structs');
      return { token: item.token, update: item.update, claims, parsed };
    } catch (err) {
      out.refused.push({ doc: claims.doc, feed: feedKey(claims.iss, claims.feed), seq: claims.seq, reason: 'forgery', detail: (err as Error).message });
      return undefined;
    }
  }

  async #droppedToken(key: string): Promise<string | undefined> {
    const value = await this.#o.store.get(Space.dropped, key);
    return value && decodeEnvelopeValue(value, { space: Space.dropped, key }).token;
  }

  async #accept(live: LiveDoc, from: NodeId, envs: HeldEnvelope[], out: ReceiveOutcome): Promise<void> {
    const { accepted, dropped, vector } = await this.#triage(live, from, envs, out);
    if (dropped.length) {
      // Kept apart, for verify and in case the cutoffs change; never applied or forwarded.
      await this.#o.store.write(dropped.map((e) => ({ type: 'put', space: Space.dropped, key: envelopeKey(e.doc, e.feed, e.seq), value: encodeEnvelopeValue(e.token, e.update) })));
      for (const e of dropped) this.#ctx.noteDropped(live, e);
    }
    if (!accepted.length) return;
    const ops: StoreOp[] = envelopeOps(accepted.map((a) => a.env), new Map([[live.name, vector]]));
    // In the order they are kept: a struct is checked against the first envelope here that carried its clocks.
    const overlaps = accepted.map((a) => stageOverlaps(live, a.env, a.parsed, this.#ctx.arrival()));
    for (const o of overlaps) ops.push(...o.ops);
    for (const origin of new Set(accepted.map((a) => feedOrigin(a.env.feed)))) {
      if (this.#remembered.has(origin)) continue;
      const jwk = this.#o.policy.authorJwk(origin);
      if (jwk) ops.push({ type: 'put', space: Space.originKey, key: origin, value: json.encode(jwk) });
    }
    await this.#o.store.write(ops);
    for (const o of overlaps) o.index();
    for (const a of accepted) this.#remembered.add(feedOrigin(a.env.feed));
    for (const a of accepted) {
      if (this.#ctx.treatment(a.env) === 'quarantine') {
        this.#ctx.events.emit('alarm', { doc: live.name, kind: 'quarantined', origins: [feedOrigin(a.env.feed)], peer: from });
        continue;
      }
      if (live.dropped.length && a.parsed.structs.some((st) => st.kind !== 10 && inDropped(live.dropped, st.client, st.clock, st.clock + st.length))) {
        // Another origin re-carries dropped content: it is now its attributable author.
        this.#ctx.events.emit('alarm', { doc: live.name, kind: 'relaundered', origins: [feedOrigin(a.env.feed)], peer: from });
      }
      const { update, refused } = await filterOverlaps(this.#o.store, live, a.parsed, a.env.update, feedOrigin(a.env.feed), a.env);
      this.#ctx.alarmEquivocation(live, refused, from);
      if (refused.length) this.#log.warn({ doc: live.name, origin: feedOrigin(a.env.feed), refused }, 'equivocation: refused the mismatching part of an envelope');
      try {
        // Cut where a.parsed says: what filterOverlaps kept is a part of it.
        applyParsedUpdate(live.ydoc, update, a.parsed);
      } catch (err) {
        this.#log.error({ err, doc: live.name, feed: a.env.feed, seq: a.env.seq }, 'applying a verified update failed');
      }
      // Not only after the batch: what waits is read again at every apply.
      if (this.#p.parking.due(live)) await this.#p.parking.settle(live);
    }
    await this.#p.parking.settle(live);
    // Published once applied: whoever sees the new vector sees the new state.
    live.vector = vector;
    this.#p.docs.forward(live, accepted.map((a) => a.env), from);
    out.accepted += accepted.length;
    this.#ctx.alarmBlocked(live, from);
    this.#p.docs.afterCommit(live, accepted.map((a) => a.env));
    if (live.deferredDeletes.size) await this.#p.local.flushDeferred(live);
  }

  /**
   * Sorts a document's received envelopes by where they stand against its
   * vector: beyond a revocation cutoff (kept apart), already held (a
   * duplicate, or a conflict), after a gap (held), or next in their feed
   * (accepted, with any held ones that follow on).
   */
  async #triage(live: LiveDoc, from: NodeId, envs: HeldEnvelope[], out: ReceiveOutcome): Promise<Triage> {
    const accepted: Triage['accepted'] = [];
    const dropped: StoredEnvelope[] = [];
    const vector = { ...live.vector };
    const queue = [...envs];
    while (queue.length) {
      const h = queue.shift()!;
      const feed = feedKey(h.claims.iss, h.claims.feed);
      const have = vector[feed] ?? 0;
      if (h.claims.seq > have && this.#ctx.treatment({ doc: live.name, feed, seq: h.claims.seq }) === 'drop') {
        // Kept apart as the first version seen, like any stored envelope: a different one for the same seq is a conflict, never a replacement.
        const key = envelopeKey(live.name, feed, h.claims.seq);
        const prior = dropped.find((e) => e.feed === feed && e.seq === h.claims.seq)?.token ?? (await this.#droppedToken(key));
        if (prior === undefined) dropped.push({ doc: live.name, feed, seq: h.claims.seq, token: h.token, update: h.update });
        if (prior !== undefined && prior !== h.token) {
          out.refused.push({ doc: live.name, feed, seq: h.claims.seq, reason: 'conflict', detail: 'a different envelope is kept for this feed and seq' });
          this.#ctx.events.emit('alarm', { doc: live.name, kind: 'conflicting_envelope', origins: [h.claims.iss], peer: from });
        } else {
          out.refused.push({ doc: live.name, feed, seq: h.claims.seq, reason: 'not_wanted', detail: 'beyond a revocation cutoff' });
        }
        continue;
      }
      if (h.claims.seq <= have) {
        const held = accepted.find((a) => a.env.feed === feed && a.env.seq === h.claims.seq)?.env ?? (await readEnvelope(this.#o.store, live.name, feed, h.claims.seq));
        if (held && held.token === h.token) out.duplicates++;
        else {
          out.refused.push({ doc: live.name, feed, seq: h.claims.seq, reason: 'conflict', detail: 'a different envelope is held for this feed and seq' });
          this.#ctx.events.emit('alarm', { doc: live.name, kind: 'conflicting_envelope', origins: [h.claims.iss], peer: from });
          this.#log.error({ doc: live.name, feed, seq: h.claims.seq, peer: from }, 'conflicting envelope: a different envelope is already held for this feed and seq');
        }
        continue;
      }
      if (h.claims.seq > have + 1) {
        this.#hold(live, from, feed, h, out);
        continue;
      }
      vector[feed] = h.claims.seq;
      accepted.push({ env: { doc: live.name, feed, seq: h.claims.seq, token: h.token, update: h.update }, parsed: h.parsed });
      const next = this.#p.held.take(live, feed, h.claims.seq + 1);
      if (next) queue.unshift(next);
    }
    return { accepted, dropped, vector };
  }

  #hold(live: LiveDoc, from: NodeId, feed: FeedKey, h: HeldEnvelope, out: ReceiveOutcome): void {
    const held = this.#p.held.hold(live, feed, h);
    if (held === 'full') out.rewant.add(live.name);
    if (held === 'conflict') {
      out.refused.push({ doc: live.name, feed, seq: h.claims.seq, reason: 'conflict', detail: 'a different envelope is held for this feed and seq' });
      this.#ctx.events.emit('alarm', { doc: live.name, kind: 'conflicting_envelope', origins: [h.claims.iss], peer: from });
      this.#log.error({ doc: live.name, feed, seq: h.claims.seq, peer: from }, 'conflicting envelope: a different envelope is waiting for this feed and seq');
    }
  }
}
