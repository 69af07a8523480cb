import { EventEmitter } from 'node:events';
import { createHash, type KeyObject } from 'node:crypto';
import { StoreError } from '../errors.js';
import * as Y from 'yjs';
import type { Logger } from 'pino';
import type { KeyPair } from '../identity/keys.js';
import type { DocName, FeedKey, NodeId } from '../types.js';
import { feedKey } from '../types.js';
import { Space, json, type Store, type StoreOp } from '../store/store.js';
import { decodeEnvelopeValue, encodeEnvelopeValue, envelopeKey, envelopeOps, readEnvelope, readFeed, readVector, type StoredEnvelope, type Vector } from '../store/records.js';
import { parseUpdate, structRanges, type ParsedStruct, type ParsedUpdate } from '../yjs/parse.js';
import { BAD_HASH, BAD_SIGNATURE, EnvelopeError, readEnvelopeClaims, signatureParts, signEnvelope, updateHash, type EnvelopeClaims } from './envelope.js';
import { Verifier, type Verdict } from './verifier.js';
import { LiveDoc, type HeldEnvelope, type LocalWrite, type RefusedPart } from './live-doc.js';
import { feedOrigin } from './overlap.js';
import { filterOverlaps } from './equivocation.js';
import { dependsOnDropped, firstMissingDeleted, inDropped, joinTypingIn, mergeBounded, newPart, parkedRanges, pendingRanges, undeletedRuns } from './new-part.js';
import { concatUpdates } from '../yjs/build.js';
import { copyDeferred, decodeSnapshot, deferredKey, deferredOp, encodeSnapshot, indexOverlaps, overlapOps, splitByClients } from './doc-records.js';
import type { Policy } from './policy.js';

export interface DocsOptions {
  readonly store: Store;
  readonly identity: KeyPair;
  readonly policy: Policy;
  readonly log: Logger;
  readonly now: () => number;
  readonly maxDocsInMemory: number;
  readonly docIdleTimeoutMs: number;
  readonly snapshotEvery: number;
  readonly maxHeldPerDoc?: number;
  /** Bytes of envelopes held waiting for an earlier seq, all documents together (default 64 MiB). */
  readonly maxHeldBytes?: number;
  readonly maxDeferredRanges?: number;
  /** Bytes of pending structs a document keeps in memory; beyond, they are parked in the store. */
  readonly maxPendingBytes?: number;
  /** Told how long local writes and received envelope messages took, in seconds (for /metrics). */
  readonly timings?: { write(seconds: number): void; receive(seconds: number): void };
}

export interface DocsEvents {
  /** A new envelope is durable here (local, or received from `from`). */
  envelope: [envelope: StoredEnvelope, from: NodeId | undefined];
  /** A document's vector changed. */
  change: [doc: DocName, vector: Vector];
  /** A document was rebuilt after a revocation change: apps on it must reload. */
  rebuilt: [doc: DocName];
  /** Something a human should look at (equivocation, conflicting envelopes). */
  alarm: [alarm: { doc: DocName; kind: string; origins: string[]; peer: string | null }];
}

/** Why a received envelope was not accepted. */
export type RefusalReason = 'forgery' | 'not_wanted' | 'not_exchangeable' | 'conflict' | 'gap_overflow';

export interface ReceiveOutcome {
  accepted: number;
  duplicates: number;
  refused: { doc: DocName; feed: FeedKey; seq: number; reason: RefusalReason; detail: string }[];
  /** Documents with a gap that could not be held: the sender should be asked again. */
  rewant: Set<DocName>;
}

const MAX_LOCAL_BATCH_BYTES = 4 * 1024 * 1024;

/** A received envelope whose claims and permissions passed, waiting for its signature check. */
interface Candidate {
  readonly item: { token: string; update: Uint8Array };
  readonly claims: EnvelopeClaims;
  readonly key: KeyObject;
  readonly input: Buffer;
  readonly sig: Buffer;
}
const RETIRED = Symbol('retired');

const heldSize = (h: HeldEnvelope): number => h.token.length + h.update.byteLength;

/**
 * The origin of a transaction that applies an app's own write and nothing
 * else: `author` (the app's connection) already holds all of it, so the
 * y-websocket endpoint sends it to every other app but not back to that one.
 */
export class LocalOrigin {
  readonly author: object;
  constructor(author: object) {
    this.author = author;
  }
}

/**
 * Nothing uses, writes or works on the document (under its lock, such as
 * envelopes being accepted): it may leave memory. Envelopes held
 * for an earlier seq do not keep it (a peer could pin every slot with them):
 * they leave with it, and come again from the peers that hold them, asked at
 * the next announce.
 */
function isIdle(live: LiveDoc): boolean {
  return live.users === 0 && live.busy === 0 && !live.signing && live.localQueue.length === 0;
}

/**
 * The documents of this node: loaded lazily from snapshot plus envelopes,
 * unloaded when idle. Local app updates become origin-signed envelopes of
 * exactly what is new here; received envelopes are checked, stored and
 * applied. Every envelope is durable before it is applied, forwarded or
 * acknowledged.
 */
export class Docs extends EventEmitter<DocsEvents> {
  readonly #o: DocsOptions;
  readonly #log: Logger;
  readonly #live = new Map<DocName, LiveDoc>();
  readonly #loading = new Map<DocName, Promise<LiveDoc>>();
  readonly #ownFeed: FeedKey;
  readonly #known = new Set<DocName>();
  /** Origins whose public key is already remembered in the store (for verify after removal). */
  readonly #remembered = new Set<string>();
  #sweeper: NodeJS.Timeout | undefined;
  readonly #verifier: Verifier;

  constructor(opts: DocsOptions) {
    super();
    this.#o = opts;
    this.#log = opts.log.child({ component: 'docs' });
    this.#verifier = new Verifier({ log: this.#log });
    // One listener per SSE stream and per session: their number is not a leak.
    this.setMaxListeners(0);
    this.#ownFeed = feedKey(opts.identity.id, opts.store.feed);
  }

  get ownFeed(): FeedKey {
    return this.#ownFeed;
  }

  /** Loads the names of stored documents, and starts the idle sweeper. */
  async start(): Promise<void> {
    for await (const [key] of this.#o.store.entries(Space.vector)) this.#known.add(key as DocName);
    for await (const [key] of this.#o.store.entries(Space.originKey)) this.#remembered.add(key);
    this.#sweeper = setInterval(() => void this.#sweep(), Math.max(1000, Math.min(this.#o.docIdleTimeoutMs / 2, 60_000)));
    this.#sweeper.unref();
  }

  /** Names of every document this node holds. */
  names(): DocName[] {
    return [...this.#known].sort();
  }

  get count(): number {
    return this.#known.size;
  }

  get loadedCount(): number {
    return this.#live.size;
  }

  has(doc: DocName): boolean {
    return this.#known.has(doc);
  }

  async vector(doc: DocName): Promise<Vector> {
    const live = this.#live.get(doc);
    if (live) return { ...live.vector };
    // Every document with a stored vector is known: a name never seen costs no read.
    return this.#known.has(doc) ? readVector(this.#o.store, doc) : {};
  }

  /** The live document (loading it if needed); `use` keeps it loaded until released. */
  async open(doc: DocName): Promise<LiveDoc> {
    const live = this.#live.get(doc);
    if (live) {
      live.lastUsed = Date.now();
      return live;
    }
    let loading = this.#loading.get(doc);
    if (!loading) {
      loading = this.#load(doc).finally(() => this.#loading.delete(doc));
      this.#loading.set(doc, loading);
    }
    return loading;
  }

  async #load(doc: DocName): Promise<LiveDoc> {
    // A copy unloaded a moment ago may still be writing its snapshot: loading
    // meanwhile would clear the parked structs that snapshot is reading (so it
    // would cover envelopes without their structs), or read the store before
    // an older snapshot lands over what this copy writes.
    await this.#unloading.get(doc);
    const live = new LiveDoc(doc, {});
    await this.#fill(live, false);
    this.#live.set(doc, live);
    this.#evictOverflow(live);
    return live;
  }

  /**
   * (Re)builds a document from the store: its snapshot, then the envelopes
   * after it in seq order per feed, applying only what the revocations in
   * force let through, re-checking overlaps. A rebuild reuses the same
   * LiveDoc, so work already queued on it sees the new state.
   */
  async #fill(live: LiveDoc, reset = true): Promise<void> {
    const store = this.#o.store;
    const doc = live.name;
    const vector = await readVector(store, doc);
    if (reset) live.reset();
    const snap = await store.get(Space.snapshot, doc);
    let base: Vector = {};
    if (snap) {
      const { vector: v, state } = decodeSnapshot(snap);
      Y.applyUpdate(live.ydoc, state);
      base = v;
    }
    // Parked pending structs are a cache of what the snapshot and the envelopes hold: start over.
    const stale: StoreOp[] = [];
    for await (const [key] of store.entries(Space.parked, `pending\u0000${doc}\u0000`)) stale.push({ type: 'del', space: Space.parked, key });
    // Only a cleanup (what is parked is found by the keys this load writes, and the next load clears
    // any left): a store that cannot write just now (a full disk) must not stop the document loading for reads.
    if (stale.length) await store.write(stale).catch((err: unknown) => this.#log.warn({ err, doc }, 'clearing parked structs of an earlier load failed; the next load clears them'));
    live.parked = [];
    for await (const [key, value] of store.entries(Space.overlap, doc + '\u0000')) {
      const [, client] = key.split('\u0000');
      live.overlap.add(parseInt(client!, 16), json.decode(value));
    }
    live.vector = { ...base };
    let replayed = 0;
    for (const feed of Object.keys(vector) as FeedKey[]) {
      for await (const env of readFeed(store, doc, feed, base[feed] ?? 0)) {
        if (env.seq > vector[feed]!) break;
        live.vector[feed] = env.seq;
        replayed++;
        if (this.#treatment(env) !== 'apply') continue;
        try {
          const parsed = parseUpdate(env.update);
          const { update, refused } = await filterOverlaps(this.#o.store, live, parsed, env.update, feedOrigin(feed), env);
          this.#alarmEquivocation(live, refused, undefined);
          Y.applyUpdate(live.ydoc, update);
        } catch (err) {
          // One stored envelope that does not parse or apply (written before a check existed, say)
          // must not make the document unloadable: it stays stored and counted, and is skipped here.
          if (err instanceof StoreError) throw err;
          this.#log.error({ err, doc, feed, seq: env.seq }, 'applying a stored update failed');
        }
        if (replayed % 100 === 0) await this.#settlePending(live);
      }
    }
    await this.#settlePending(live);
    const deferred = await store.getJson<[number, [number, number][]][]>(Space.parked, `deferred\u0000${doc}`);
    if (deferred) live.deferredDeletes = new Map(deferred);
    for await (const [, value] of store.entries(Space.dropped, doc + '\u0000')) this.#noteDropped(live, decodeEnvelopeValue(value));
    this.#alarmBlocked(live, undefined);
    // A long replay is worth a snapshot (written at the next one due, or when unloaded).
    live.sinceSnapshot = replayed;
  }

  /** Opens a document and keeps it loaded (a user: an app connection) until `release`. */
  async acquire(doc: DocName): Promise<LiveDoc> {
    for (;;) {
      const live = await this.open(doc);
      if (live.retired) continue;
      live.users++;
      return live;
    }
  }

  release(live: LiveDoc): void {
    live.users--;
  }

  /**
   * Runs `fn` on the document under its lock. A document unloaded (retired)
   * between `open` and the lock is opened again, so no work ever lands on a
   * copy that is no longer the document.
   */
  async #withLive<T>(doc: DocName, fn: (live: LiveDoc) => Promise<T>): Promise<T> {
    for (;;) {
      const live = await this.open(doc);
      const result = await live.run(async () => (live.retired ? RETIRED : fn(live)));
      if (result !== RETIRED) return result as T;
    }
  }

  // ---- local writes ------------------------------------------------------

  /**
   * Signs what is new to this node in an app's update, stores it, applies it
   * and resolves once durable. Updates that arrive while an envelope is being
   * signed and stored are merged into the next one.
   */
  async write(doc: DocName, update: Uint8Array, author?: object): Promise<{ vector: Vector; refused: RefusedPart[] }> {
    const started = performance.now();
    const done = await this.#enqueue(doc, parseUpdate(update), update, author);
    this.#o.timings?.write((performance.now() - started) / 1000);
    return done;
  }

  async #enqueue(doc: DocName, parsed: ParsedUpdate, update: Uint8Array, author: object | undefined): Promise<{ vector: Vector; refused: RefusedPart[] }> {
    const live = await this.open(doc);
    return new Promise((resolve, reject) => {
      live.localQueue.push({ update, parsed, author, resolve, reject, refused: [] });
      if (live.signing) return;
      // Started on the next tick: keystrokes handed over in the same turn (one
      // socket read holds several) go into one envelope, not one and the rest.
      live.signing = true;
      process.nextTick(() => void this.#pumpLocal(live));
    });
  }

  /**
   * Whether an update carries anything new to this node (a struct it lacks,
   * or a deletion of an item it holds undeleted): what a read-only app may
   * not send. Nothing is changed.
   */
  async hasNew(doc: DocName, update: Uint8Array): Promise<boolean> {
    const parsed = parseUpdate(update);
    return this.#withLive(doc, async (live) => {
      const ydoc = live.ydoc;
      const pending = [...pendingRanges(ydoc), ...parkedRanges(live)];
      const diff = parseUpdate(Y.diffUpdate(update, Y.encodeStateVector(ydoc)));
      const isPending = (s: ParsedStruct) => pending.some(([c, from, to]) => c === s.client && s.clock >= from && s.clock + s.length <= to);
      if (diff.structs.some((s) => s.kind !== 10 && !isPending(s))) return true;
      for (const [client, ranges] of parsed.deletes) {
        const state = Y.getState(ydoc.store, client);
        for (const [clock, len] of ranges) if (undeletedRuns(ydoc, client, clock, Math.min(clock + len, state)).length) return true;
      }
      return false;
    });
  }

  async #pumpLocal(live: LiveDoc): Promise<void> {
    live.signing = true;
    try {
      while (live.localQueue.length) {
        const batch: LocalWrite[] = [];
        let bytes = 0;
        while (live.localQueue.length && (batch.length === 0 || bytes + live.localQueue[0]!.update.byteLength <= MAX_LOCAL_BATCH_BYTES)) {
          const w = live.localQueue.shift()!;
          bytes += w.update.byteLength;
          batch.push(w);
        }
        try {
          const vector = await live.run(async () => (live.retired ? RETIRED : this.#signBatch(live, batch)));
          if (vector === RETIRED) {
            // Unloaded meanwhile: the writes go to the document as loaded now.
            for (const w of batch) this.#enqueue(live.name, w.parsed, w.update, w.author).then(w.resolve, w.reject);
            continue;
          }
          for (const w of batch) w.resolve({ vector, refused: w.refused });
        } catch (err) {
          for (const w of batch) w.reject(err);
        }
      }
    } finally {
      live.signing = false;
    }
  }

  async #signBatch(live: LiveDoc, batch: LocalWrite[]): Promise<Vector> {
    const refusedRanges: [number, number, number][] = [];
    let launders = false;
    for (const w of batch) {
      const parsed = w.parsed;
      // Laundering (DESIGN.md §2): structs of dropped ranges, or built on them, are never signed for an app.
      for (const st of parsed.structs) {
        if (st.kind === 10) continue;
        const own = inDropped(live.dropped, st.client, st.clock, st.clock + st.length);
        if (!own && !dependsOnDropped(live.dropped, st)) continue;
        launders ||= own;
        w.refused.push({ client: st.client, from: st.clock, to: st.clock + st.length, reason: 'revoked', origins: [] });
        refusedRanges.push([st.client, st.clock, st.clock + st.length]);
      }
      const { refused } = await filterOverlaps(this.#o.store, live, parsed, w.update, this.#o.identity.id);
      this.#alarmEquivocation(live, refused, undefined);
      for (const r of refused) {
        w.refused.push(r);
        refusedRanges.push([r.client, r.from, r.to]);
      }
    }
    const one = batch.length === 1 ? batch[0]! : concatUpdates(batch);
    const merged = one?.update ?? mergeBounded(batch.map((w) => w.update));
    const mergedParsed = one?.parsed ?? parseUpdate(merged);
    // One struct per run of typing, not per keystroke: what every later step pays for.
    const joined = joinTypingIn(live.ydoc, merged, mergedParsed, [...refusedRanges, ...parkedRanges(live)]);
    const parsed = joined === merged ? mergedParsed : parseUpdate(joined);
    const before = deferredKey(live);
    const saved = copyDeferred(live);
    // Whether what gets applied can only be what this batch's one author sent (no
    // deferred deletion of another app's is flushed into it, no pending struct of
    // anyone else's can resolve): then that author needs no copy back.
    const author = batch.every((w) => w.author !== undefined && w.author === batch[0]!.author) && live.deferredDeletes.size === 0 && !live.ydoc.store.pendingStructs && !live.ydoc.store.pendingDs && !live.parked.length ? batch[0]!.author : undefined;
    // Deletions that only dropped envelopes made are not signed when they come with dropped structs.
    const signed = newPart(live, joined, refusedRanges, launders ? live.droppedDeletes : undefined, this.#o.maxDeferredRanges, () => this.#deferredOverflow(live), parsed);
    // Deferred deletions are acknowledged with the write: durable in the same batch.
    await this.#commitDeferred(live, before, saved, (ops) => (signed ? this.#commitLocal(live, signed.update, signed.parsed, ops, author) : this.#o.store.write(ops)));
    return { ...live.vector };
  }

  /**
   * Runs a commit that carries the document's deferred deletions (changed
   * from `before` by newPart). If it fails, they are put back as they were
   * (`saved`), as the store holds them: a deletion acknowledged earlier and
   * taken out for a write that failed must not be forgotten. As a failed
   * write may still have reached the store, the next commit writes them
   * whether or not they changed.
   */
  async #commitDeferred(live: LiveDoc, before: string, saved: LiveDoc['deferredDeletes'], commit: (ops: StoreOp[]) => Promise<void>): Promise<void> {
    const ops: StoreOp[] = deferredKey(live) === before && !live.deferredUnsure ? [] : [deferredOp(live)];
    try {
      await commit(ops);
    } catch (err) {
      live.deferredDeletes = saved;
      live.deferredUnsure = true;
      throw err;
    }
    if (ops.length) live.deferredUnsure = false;
  }

  /**
   * Signs, stores and applies one local change. A change that carries more
   * client ranges than fit one envelope token is split into several
   * envelopes (consecutive seqs, one atomic batch); deletions go in the last.
   */
  async #commitLocal(live: LiveDoc, update: Uint8Array, parsed: ParsedUpdate, extra: StoreOp[] = [], author?: object): Promise<void> {
    const parts = splitByClients(update, parsed);
    const envs: StoredEnvelope[] = [];
    const ats: number[] = [];
    const ops: StoreOp[] = [];
    let seq = live.vector[this.#ownFeed] ?? 0;
    for (const part of parts) {
      seq++;
      const claims: EnvelopeClaims = {
        iss: this.#o.identity.id,
        doc: live.name,
        feed: this.#o.store.feed,
        seq,
        h: updateHash(part.update),
        clients: structRanges(part.parsed.structs),
        iat: Math.floor(this.#o.now() / 1000),
      };
      const env: StoredEnvelope = { doc: live.name, feed: this.#ownFeed, seq, token: signEnvelope(claims, this.#o.identity.privateKey), update: part.update };
      envs.push(env);
      ats.push(this.#arrival());
      ops.push(...overlapOps(live, env, part.parsed, ats[ats.length - 1]!));
    }
    const vector = { ...live.vector, [this.#ownFeed]: seq };
    await this.#o.store.write([...envelopeOps(envs, new Map([[live.name, vector]])), ...ops, ...extra]);
    for (const [i, env] of envs.entries()) indexOverlaps(live, env, parts[i]!.parsed, ats[i]!);
    live.vector = vector;
    // Durable and counted: peers get it before the local apply, which does not change what they are sent.
    this.#forward(live, envs, undefined);
    // The transaction's origin names the app that sent it all (if one did): see LocalOrigin.
    for (const env of envs) Y.applyUpdate(live.ydoc, env.update, author && new LocalOrigin(author));
    await this.#settlePending(live);
    this.#afterCommit(live, envs);
  }

  /**
   * Hands durable envelopes to the peers. Only once the vector that counts
   * them is published, and the document is known: a peer's want or a new
   * session reads those, and must not miss what was forwarded meanwhile.
   */
  #forward(live: LiveDoc, envs: StoredEnvelope[], from: NodeId | undefined): void {
    this.#known.add(live.name);
    for (const env of envs) this.emit('envelope', env, from);
  }

  #afterCommit(live: LiveDoc, envs: StoredEnvelope[]): void {
    live.sinceSnapshot += envs.length;
    this.emit('change', live.name, { ...live.vector });
    if (live.sinceSnapshot >= this.#o.snapshotEvery) void live.run(() => this.#snapshot(live)).catch((err) => this.#log.error({ err, doc: live.name }, 'snapshot failed'));
  }

  // ---- received envelopes --------------------------------------------------

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
    const verdicts = await this.#verifier.verify(candidates.map((c) => ({ input: c.input, sig: c.sig, key: c.key, update: c.item.update, h: c.claims.h })));
    const byDoc = new Map<DocName, HeldEnvelope[]>();
    for (const [i, c] of candidates.entries()) {
      const checked = this.#finishCheck(c, verdicts[i], out);
      if (checked) (byDoc.get(checked.claims.doc) ?? byDoc.set(checked.claims.doc, []).get(checked.claims.doc)!).push(checked);
    }
    await Promise.all([...byDoc].map(([doc, envs]) => this.#withLive(doc, (live) => this.#accept(live, from, envs, out))));
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
      const parsed = parseUpdate(item.update);
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
    return value && decodeEnvelopeValue(value).token;
  }

  async #accept(live: LiveDoc, from: NodeId, envs: HeldEnvelope[], out: ReceiveOutcome): Promise<void> {
    const accepted: { env: StoredEnvelope; parsed: ParsedUpdate }[] = [];
    const dropped: StoredEnvelope[] = [];
    const vector = { ...live.vector };
    const queue = [...envs];
    while (queue.length) {
      const h = queue.shift()!;
      const feed = feedKey(h.claims.iss, h.claims.feed);
      const have = vector[feed] ?? 0;
      if (h.claims.seq > have && this.#o.policy.trust.treatment(h.claims.iss, live.name, feed, h.claims.seq) === 'drop') {
        // Kept apart as the first version seen, like any stored envelope: a different one for the same seq is a conflict, never a replacement.
        const key = envelopeKey(live.name, feed, h.claims.seq);
        const prior = dropped.find((e) => e.feed === feed && e.seq === h.claims.seq)?.token ?? (await this.#droppedToken(key));
        if (prior === undefined) dropped.push({ doc: live.name, feed, seq: h.claims.seq, token: h.token, update: h.update });
        if (prior !== undefined && prior !== h.token) {
          out.refused.push({ doc: live.name, feed, seq: h.claims.seq, reason: 'conflict', detail: 'a different envelope is kept for this feed and seq' });
          this.emit('alarm', { doc: live.name, kind: 'conflicting_envelope', origins: [h.claims.iss], peer: from });
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
          this.emit('alarm', { doc: live.name, kind: 'conflicting_envelope', origins: [h.claims.iss], peer: from });
          this.#log.error({ doc: live.name, feed, seq: h.claims.seq, peer: from }, 'conflicting envelope: a different envelope is already held for this feed and seq');
        }
        continue;
      }
      if (h.claims.seq > have + 1) {
        this.#hold(live, feed, h, out);
        continue;
      }
      vector[feed] = h.claims.seq;
      accepted.push({ env: { doc: live.name, feed, seq: h.claims.seq, token: h.token, update: h.update }, parsed: h.parsed });
      const next = this.#takeHeld(live, feed, h.claims.seq + 1);
      if (next) queue.unshift(next);
    }
    if (dropped.length) {
      // Kept apart, for verify and in case the cutoffs change; never applied or forwarded.
      await this.#o.store.write(dropped.map((e) => ({ type: 'put', space: Space.dropped, key: envelopeKey(e.doc, e.feed, e.seq), value: encodeEnvelopeValue(e.token, e.update) })));
      for (const e of dropped) this.#noteDropped(live, e);
    }
    if (!accepted.length) return;
    const ops: StoreOp[] = envelopeOps(accepted.map((a) => a.env), new Map([[live.name, vector]]));
    // In the order they are kept: a struct is checked against the first envelope here that carried its clocks.
    const ats = accepted.map(() => this.#arrival());
    for (const [i, a] of accepted.entries()) ops.push(...overlapOps(live, a.env, a.parsed, ats[i]!));
    for (const origin of new Set(accepted.map((a) => feedOrigin(a.env.feed)))) {
      if (this.#remembered.has(origin)) continue;
      const jwk = this.#o.policy.authorJwk(origin);
      if (jwk) ops.push({ type: 'put', space: Space.originKey, key: origin, value: json.encode(jwk) });
    }
    await this.#o.store.write(ops);
    for (const [i, a] of accepted.entries()) indexOverlaps(live, a.env, a.parsed, ats[i]!);
    for (const a of accepted) this.#remembered.add(feedOrigin(a.env.feed));
    for (const a of accepted) {
      if (this.#treatment(a.env) === 'quarantine') {
        this.emit('alarm', { doc: live.name, kind: 'quarantined', origins: [feedOrigin(a.env.feed)], peer: from });
        continue;
      }
      if (live.dropped.length && a.parsed.structs.some((st) => st.kind !== 10 && inDropped(live.dropped, st.client, st.clock, st.clock + st.length))) {
        // Another origin re-carries dropped content: it is now its attributable author.
        this.emit('alarm', { doc: live.name, kind: 'relaundered', origins: [feedOrigin(a.env.feed)], peer: from });
      }
      const { update, refused } = await filterOverlaps(this.#o.store, live, a.parsed, a.env.update, feedOrigin(a.env.feed), a.env);
      this.#alarmEquivocation(live, refused, from);
      if (refused.length) this.#log.warn({ doc: live.name, origin: feedOrigin(a.env.feed), refused }, 'equivocation: refused the mismatching part of an envelope');
      try {
        Y.applyUpdate(live.ydoc, update);
      } catch (err) {
        this.#log.error({ err, doc: live.name, feed: a.env.feed, seq: a.env.seq }, 'applying a verified update failed');
      }
    }
    await this.#settlePending(live);
    // Published once applied: whoever sees the new vector sees the new state.
    live.vector = vector;
    this.#forward(live, accepted.map((a) => a.env), from);
    out.accepted += accepted.length;
    this.#alarmBlocked(live, from);
    this.#afterCommit(live, accepted.map((a) => a.env));
    if (live.deferredDeletes.size) await this.#flushDeferred(live);
  }

  /** Remembers a dropped envelope's struct ranges and deletions (for the laundering checks). */
  #noteDropped(live: LiveDoc, env: { token: string; update: Uint8Array }): void {
    live.dropped.push(...readEnvelopeClaims(env.token).clients);
    for (const [client, ranges] of parseUpdate(env.update).deletes) for (const [clock, len] of ranges) live.droppedDeletes.push([client, clock, clock + len]);
  }

  #treatment(env: { doc: DocName; feed: FeedKey; seq: number }) {
    return this.#o.policy.trust.treatment(feedOrigin(env.feed), env.doc, env.feed, env.seq);
  }

  /**
   * Re-derives every document after the revocations in force changed
   * (DESIGN.md §2): envelopes now beyond a cutoff move to the dropped key
   * space, dropped ones now within it move back, and every document with a
   * feed of a revoked (or formerly revoked) origin is rebuilt from its
   * envelopes on its next load. A "rebuild pending" mark makes it crash-safe.
   * Resolves with the documents rebuilt.
   */
  async rebuild(origins: ReadonlySet<string>): Promise<DocName[]> {
    await this.#o.store.write([{ type: 'put', space: Space.meta, key: 'rebuild', value: json.encode([...origins]) }]);
    const withDropped = new Set<DocName>();
    for await (const [key] of this.#o.store.entries(Space.dropped)) withDropped.add(key.split('\u0000')[0] as DocName);
    const rebuilt: DocName[] = [];
    for (const doc of this.names()) {
      const vector = await this.vector(doc);
      const touched = withDropped.has(doc) || Object.keys(vector).some((f) => origins.has(feedOrigin(f as FeedKey)));
      if (!touched) continue;
      await this.#withLive(doc, (live) => this.#rederive(live));
      rebuilt.push(doc);
      this.emit('rebuilt', doc);
    }
    await this.#o.store.write([{ type: 'del', space: Space.meta, key: 'rebuild' }]);
    if (rebuilt.length) this.#log.warn({ docs: rebuilt.length }, 'revocations changed: documents rebuilt');
    return rebuilt;
  }

  /** Resumes a rebuild that a crash interrupted. */
  async resumeRebuild(): Promise<void> {
    const pending = await this.#o.store.getJson<string[]>(Space.meta, 'rebuild');
    if (pending) await this.rebuild(new Set(pending));
  }

  async #rederive(live: LiveDoc): Promise<void> {
    const store = this.#o.store;
    const vector = { ...live.vector };
    const ops: StoreOp[] = [];
    for (const feed of Object.keys(vector) as FeedKey[]) {
      let cut: number | undefined;
      for await (const env of readFeed(store, live.name, feed)) {
        if (cut === undefined && this.#treatment(env) === 'drop') cut = env.seq - 1;
        if (cut !== undefined) {
          ops.push({ type: 'del', space: Space.envelope, key: envelopeKey(env.doc, env.feed, env.seq) });
          ops.push({ type: 'put', space: Space.dropped, key: envelopeKey(env.doc, env.feed, env.seq), value: encodeEnvelopeValue(env.token, env.update) });
        }
      }
      if (cut !== undefined) vector[feed] = cut;
      if (vector[feed] === 0) delete vector[feed];
    }
    for await (const [key, value] of store.entries(Space.dropped, live.name + '\u0000')) {
      const [, feed, seqHex] = key.split('\u0000') as [string, FeedKey, string];
      const seq = parseInt(seqHex, 16);
      if (ops.some((o) => o.type === 'put' && o.space === Space.dropped && o.key === key)) continue;
      if (seq !== (vector[feed] ?? 0) + 1 || this.#treatment({ doc: live.name, feed, seq }) === 'drop') continue;
      ops.push({ type: 'del', space: Space.dropped, key });
      ops.push({ type: 'put', space: Space.envelope, key, value });
      vector[feed] = seq;
    }
    ops.push({ type: 'put', space: Space.vector, key: live.name, value: json.encode(vector) });
    ops.push({ type: 'del', space: Space.snapshot, key: live.name });
    await store.write(ops);
    await this.#fill(live);
    live.sinceSnapshot = 1;
    this.emit('change', live.name, { ...live.vector });
  }

  /**
   * Keeps a document's pending structs and pending deletions (DESIGN.md §2,
   * §9) each within maxPendingBytes: beyond it they are parked in the store,
   * keyed by what they wait for; parked ones come back as soon as any of that
   * is held. (Yjs retries its pending deletions at every update, so unbounded
   * they would cost time as well as memory.)
   */
  async #settlePending(live: LiveDoc): Promise<void> {
    const store = live.ydoc.store;
    for (let i = 0; i < live.parked.length; ) {
      const p = live.parked[i]!;
      if (!p.missing.some(([client, clock]) => clock < Y.getState(store, client))) {
        i++;
        continue;
      }
      const bytes = await this.#o.store.get(Space.parked, p.key);
      live.parked.splice(i, 1);
      if (bytes) Y.applyUpdateV2(live.ydoc, bytes);
      await this.#o.store.write([{ type: 'del', space: Space.parked, key: p.key }]);
      // What came back may be what others wait for.
      i = 0;
    }
    const limit = this.#o.maxPendingBytes ?? 1024 * 1024;
    const pending = store.pendingStructs;
    if (pending && pending.update.byteLength > limit) {
      await this.#park(live, 'structs', pending.update, [...pending.missing], pendingRanges(live.ydoc));
      store.pendingStructs = null;
    }
    const deletions = store.pendingDs;
    if (deletions && deletions.byteLength > limit) {
      const missing = firstMissingDeleted(live.ydoc, deletions);
      if (!missing.length) return;
      await this.#park(live, 'deletions', deletions, missing, []);
      store.pendingDs = null;
    }
  }

  async #park(live: LiveDoc, what: 'structs' | 'deletions', update: Uint8Array, missing: [number, number][], ranges: [number, number, number][]): Promise<void> {
    const [client, clock] = missing[0] ?? [0, 0];
    const key = `pending\u0000${live.name}\u0000${client}:${clock}\u0000${(this.#parkSeq++).toString(36)}`;
    await this.#o.store.write([{ type: 'put', space: Space.parked, key, value: update }]);
    live.parked.push({ key, missing, ranges });
    this.#log.warn({ doc: live.name, bytes: update.byteLength, waitingFor: missing.slice(0, 5) }, `pending ${what} passed maxPendingBytes: parked in the store until what they wait for arrives`);
  }

  #parkSeq = 0;

  /**
   * Arrival order of kept envelopes, for the overlap index: increasing in
   * this process, and after a restart above what came before (it starts
   * from the clock, in 1/1024 ms).
   */
  #arrived = 0;
  #arrival(): number {
    this.#arrived = Math.max(this.#arrived + 1, Date.now() * 1024);
    return this.#arrived;
  }

  #deferredOverflow(live: LiveDoc): void {
    this.#log.warn({ doc: live.name }, 'deletions waiting for their items passed their bound: the oldest client\'s were dropped');
  }

  #alarmEquivocation(live: LiveDoc, refused: readonly RefusedPart[], peer: NodeId | undefined): void {
    for (const r of refused) this.emit('alarm', { doc: live.name, kind: 'equivocation', origins: [...r.origins], peer: peer ?? null });
  }

  /** Honest edits that wait on dropped content stay pending; an alarm names their clients. */
  #alarmBlocked(live: LiveDoc, from: NodeId | undefined): void {
    if (!live.dropped.length) return;
    const missing = [...(live.ydoc.store.pendingStructs?.missing ?? []), ...live.parked.flatMap((p) => p.missing)];
    const blocked = missing.filter(([client, clock]) => inDropped(live.dropped, client, clock, clock + 1));
    if (!blocked.length) return;
    const clients = [...new Set([...pendingRanges(live.ydoc), ...parkedRanges(live)].map(([c]) => String(c)))];
    this.emit('alarm', { doc: live.name, kind: 'blocked_on_dropped', origins: clients, peer: from ?? null });
  }

  /** Structs (in clock units) waiting in the pending sets of loaded documents. */
  pendingCount(): number {
    let n = 0;
    for (const live of this.#live.values()) for (const [, from, to] of [...pendingRanges(live.ydoc), ...parkedRanges(live)]) n += to - from;
    return n;
  }

  #hold(live: LiveDoc, feed: FeedKey, h: HeldEnvelope, out: ReceiveOutcome): void {
    const size = heldSize(h);
    if (live.retired || live.heldCount >= (this.#o.maxHeldPerDoc ?? 1000) || this.#heldBytes + size > (this.#o.maxHeldBytes ?? 64 * 1024 * 1024)) {
      out.rewant.add(live.name);
      return;
    }
    const m = live.held.get(feed) ?? live.held.set(feed, new Map()).get(feed)!;
    const earlier = m.get(h.claims.seq);
    if (earlier) {
      // The first one held stays; a different second one is a conflict, as for stored envelopes.
      if (earlier.token !== h.token) {
        out.refused.push({ doc: live.name, feed, seq: h.claims.seq, reason: 'conflict', detail: 'a different envelope is held for this feed and seq' });
        this.emit('alarm', { doc: live.name, kind: 'conflicting_envelope', origins: [h.claims.iss], peer: null });
      }
      return;
    }
    live.heldCount++;
    live.heldBytes += size;
    this.#heldBytes += size;
    m.set(h.claims.seq, h);
  }

  /** Bytes held by every loaded document. */
  #heldBytes = 0;

  #takeHeld(live: LiveDoc, feed: FeedKey, seq: number): HeldEnvelope | undefined {
    const m = live.held.get(feed);
    const h = m?.get(seq);
    if (!h) return undefined;
    m!.delete(seq);
    const size = heldSize(h);
    live.heldCount--;
    live.heldBytes -= size;
    this.#heldBytes -= size;
    return h;
  }

  #dropHeld(live: LiveDoc): void {
    this.#heldBytes -= live.heldBytes;
    live.held.clear();
    live.heldCount = 0;
    live.heldBytes = 0;
  }

  /** Signs deletions that were waiting for their items, once they are here. */
  async #flushDeferred(live: LiveDoc): Promise<void> {
    const empty = new Uint8Array([0, 0]);
    const before = deferredKey(live);
    const saved = copyDeferred(live);
    const signed = newPart(live, empty, [], undefined, this.#o.maxDeferredRanges, () => this.#deferredOverflow(live));
    await this.#commitDeferred(live, before, saved, (ops) => (signed ? this.#commitLocal(live, signed.update, signed.parsed, ops) : this.#o.store.write(ops)));
  }

  // ---- snapshots, unloading ----------------------------------------------

  async #snapshot(live: LiveDoc): Promise<void> {
    if (live.sinceSnapshot === 0) return;
    let state = Y.encodeStateAsUpdate(live.ydoc);
    // Parked structs belong to the document too: a snapshot that left them out would lose them at the next load.
    if (live.parked.length) {
      const parked: Uint8Array[] = [];
      for (const p of live.parked) {
        const bytes = await this.#o.store.get(Space.parked, p.key);
        // Without them the snapshot would cover their envelopes and lose their structs: better none.
        if (!bytes) throw new StoreError(`parked structs of ${live.name} are missing from the store: no snapshot written`);
        parked.push(Y.convertUpdateFormatV2ToV1(bytes));
      }
      state = mergeBounded([state, ...parked]);
    }
    await this.#o.store.write([{ type: 'put', space: Space.snapshot, key: live.name, value: encodeSnapshot(live.vector, state) }]);
    live.sinceSnapshot = 0;
  }

  /** SHA-256 of the document's encoded state: equal on every node that holds the same envelopes. */
  async digest(doc: DocName): Promise<string> {
    return this.#withLive(doc, async (live) => this.#digestOf(live));
  }

  /**
   * A document's vector and, if it is loaded (announcing never loads one), its
   * digest, read together under its lock: a change being applied meanwhile
   * shows in both or in neither, so equal vectors with different digests
   * mean different states, not a read in the middle of a change.
   */
  async vectorAndDigest(doc: DocName, withDigest = true): Promise<{ vector: Vector; digest?: string }> {
    const live = this.#live.get(doc);
    if (!live) return { vector: await this.vector(doc) };
    const read = await live.run(async () => (live.retired ? undefined : { vector: { ...live.vector }, ...(withDigest ? { digest: this.#digestOf(live) } : {}) }));
    return read ?? { vector: await this.vector(doc) };
  }

  /**
   * The digest covers what the document holds applied, not what waits in its
   * pending sets: nodes with the same envelopes agree on it whether or not
   * they have parked their pending structs.
   */
  #digestOf(live: LiveDoc): string {
    if (live.digest) return live.digest;
    const store = live.ydoc.store;
    const { pendingStructs, pendingDs } = store;
    store.pendingStructs = null;
    store.pendingDs = null;
    try {
      live.digest = createHash('sha256').update(Y.encodeStateAsUpdate(live.ydoc)).digest('hex');
    } finally {
      store.pendingStructs = pendingStructs;
      store.pendingDs = pendingDs;
    }
    return live.digest;
  }

  /** Raises an alarm (for checks made outside this class, such as the digest backstop). */
  alarm(alarm: { doc: DocName; kind: string; origins: string[]; peer: string | null }): void {
    this.emit('alarm', alarm);
  }

  async #sweep(): Promise<void> {
    const cutoff = Date.now() - this.#o.docIdleTimeoutMs;
    for (const live of [...this.#live.values()]) if (live.users === 0 && live.lastUsed < cutoff) await this.#unload(live);
  }

  /**
   * Unloads the least recently used idle documents beyond maxDocsInMemory,
   * never `loaded` itself: when every other document is in use, the bound
   * gives way for a while rather than unloading what is being opened (which
   * would open it again, forever).
   */
  #evictOverflow(loaded: LiveDoc): void {
    if (this.#live.size <= this.#o.maxDocsInMemory) return;
    const idle = [...this.#live.values()].filter((l) => l !== loaded && isIdle(l)).sort((a, b) => a.lastUsed - b.lastUsed);
    for (const live of idle.slice(0, this.#live.size - this.#o.maxDocsInMemory)) void this.#unload(live);
  }

  /**
   * Takes an idle document out of memory at once (retired: work that still
   * finds it re-opens the document), then writes its snapshot under its lock.
   */
  async #unload(live: LiveDoc): Promise<void> {
    if (!isIdle(live) || this.#live.get(live.name) !== live) return;
    live.retired = true;
    this.#live.delete(live.name);
    this.#dropHeld(live);
    const done = live.run(() => this.#snapshot(live)).catch((err) => this.#log.error({ err, doc: live.name }, 'snapshot of an unloaded document failed'));
    this.#unloading.set(live.name, done);
    await done;
    if (this.#unloading.get(live.name) === done) this.#unloading.delete(live.name);
  }

  /** Snapshots of unloaded documents still being written, by document. */
  readonly #unloading = new Map<DocName, Promise<void>>();

  /** Snapshots every loaded document and stops the sweeper. */
  async stop(): Promise<void> {
    clearInterval(this.#sweeper);
    await this.#verifier.close();
    for (const live of this.#live.values()) {
      await live.run(() => this.#snapshot(live)).catch((err) => this.#log.error({ err, doc: live.name }, 'final snapshot failed'));
    }
  }
}

