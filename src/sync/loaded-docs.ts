import * as Y from 'yjs';
import { StoreError } from '../errors.js';
import type { Logger } from 'pino';
import type { DocName, FeedKey, NodeId } from '../types.js';
import { Space, json, type StoreOp } from '../store/store.js';
import { decodeEnvelopeValue, readVector, type StoredEnvelope, type Vector } from '../store/records.js';
import { parseUpdate } from '../yjs/parse.js';
import { applyParsedUpdate } from '../yjs/cuts.js';
import { waitForWhatIsNeeded } from '../yjs/pending.js';
import { LiveDoc } from './live-doc.js';
import { feedOrigin } from './overlap.js';
import { filterOverlaps } from './equivocation.js';
import { parkedRanges, pendingRanges } from './new-part.js';
import { decodeSnapshot, readIntactFeed } from './doc-records.js';
import { digestOf, writeSnapshot } from './doc-state.js';
import type { DocsContext, DocsOptions } from './docs-context.js';
import type { Parking } from './parking.js';
import type { HeldEnvelopes } from './held.js';

/** What `withLive` and its callers get back for a document unloaded before its turn came. */
export const RETIRED = Symbol('retired');

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
 * The documents this node holds, and those of them in memory: loaded lazily
 * from snapshot plus envelopes, unloaded (snapshot written) when idle or
 * beyond maxDocsInMemory. Every change made durable is published here.
 */
export class LoadedDocs {
  readonly #ctx: DocsContext;
  readonly #o: DocsOptions;
  readonly #log: Logger;
  readonly #parking: Parking;
  readonly #held: HeldEnvelopes;
  readonly #known = new Set<DocName>();
  readonly #live = new Map<DocName, LiveDoc>();
  readonly #loading = new Map<DocName, Promise<LiveDoc>>();
  /** Snapshots of unloaded documents still being written, by document. */
  readonly #unloading = new Map<DocName, Promise<void>>();

  constructor(ctx: DocsContext, parking: Parking, held: HeldEnvelopes) {
    this.#ctx = ctx;
    this.#o = ctx.options;
    this.#log = ctx.log;
    this.#parking = parking;
    this.#held = held;
  }

  /** Reads the names of the stored documents. */
  async loadNames(): Promise<void> {
    for await (const [key] of this.#o.store.entries(Space.vector)) this.#known.add(key as DocName);
  }

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

  /** The live document (loading it if needed). */
  async open(doc: DocName): Promise<LiveDoc> {
    const live = this.#live.get(doc);
    if (live) {
      live.lastUsed = this.#o.now();
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
    const live = new LiveDoc(doc, {}, this.#o.now);
    await this.fill(live, false);
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
  async fill(live: LiveDoc, reset = true): Promise<void> {
    const store = this.#o.store;
    const doc = live.name;
    const vector = await readVector(store, doc);
    if (reset) live.reset();
    const snap = await store.get(Space.snapshot, doc);
    let base: Vector = {};
    if (snap) {
      try {
        const { vector: v, state } = decodeSnapshot(snap, doc);
        if (Object.entries(v).some(([feed, seq]) => seq > (vector[feed] ?? 0))) throw new Error('the snapshot covers envelopes the document does not count');
        Y.applyUpdate(live.ydoc, state);
        waitForWhatIsNeeded(live.ydoc);
        base = v;
      } catch (err) {
        // A snapshot is a cache of what the envelopes hold: a damaged one is passed over, and the document replayed whole.
        this.#log.error({ err, doc }, 'damaged snapshot passed over; replaying the document from its envelopes');
        live.reset();
      }
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
      for await (const env of readIntactFeed(store, doc, feed, base[feed] ?? 0)) {
        if (env.seq > vector[feed]!) break;
        live.vector[feed] = env.seq;
        replayed++;
        if (this.#ctx.treatment(env) !== 'apply') continue;
        try {
          const parsed = parseUpdate(env.update);
          const { update, refused } = await filterOverlaps(this.#o.store, live, parsed, env.update, feedOrigin(feed), env);
          this.#ctx.alarmEquivocation(live, refused, undefined);
          applyParsedUpdate(live.ydoc, update, parsed);
        } catch (err) {
          // One stored envelope that does not parse or apply (written before a check existed, say)
          // must not make the document unloadable: it stays stored and counted, and is skipped here.
          if (err instanceof StoreError) throw err;
          this.#log.error({ err, doc, feed, seq: env.seq }, 'applying a stored update failed');
        }
        if (replayed % 100 === 0) await this.#parking.settle(live);
      }
    }
    await this.#parking.settle(live);
    const deferred = await store.getJson<[number, [number, number][]][]>(Space.parked, `deferred\u0000${doc}`);
    if (deferred) live.deferredDeletes = new Map(deferred);
    for await (const [key, value] of store.entries(Space.dropped, doc + '\u0000')) this.#ctx.noteDropped(live, decodeEnvelopeValue(value, { space: Space.dropped, key }));
    this.#ctx.alarmBlocked(live, undefined);
    // A long replay is worth a snapshot (written at the next one due, or when unloaded).
    live.sinceSnapshot = replayed;
  }

  /**
   * Runs `fn` on the document under its lock. A document unloaded (retired)
   * between `open` and the lock is opened again, so no work ever lands on a
   * copy that is no longer the document.
   */
  async withLive<T>(doc: DocName, fn: (live: LiveDoc) => Promise<T>): Promise<T> {
    for (;;) {
      const live = await this.open(doc);
      const result = await live.run(async () => (live.retired ? RETIRED : fn(live)));
      if (result !== RETIRED) return result as T;
    }
  }

  /**
   * Hands durable envelopes to the peers. Only once the vector that counts
   * them is published, and the document is known: a peer's want or a new
   * session reads those, and must not miss what was forwarded meanwhile.
   */
  forward(live: LiveDoc, envs: StoredEnvelope[], from: NodeId | undefined): void {
    this.#known.add(live.name);
    for (const env of envs) this.#ctx.events.emit('envelope', env, from);
  }

  afterCommit(live: LiveDoc, envs: StoredEnvelope[]): void {
    live.sinceSnapshot += envs.length;
    this.#ctx.events.emit('change', live.name, { ...live.vector });
    if (live.sinceSnapshot >= this.#o.snapshotEvery) void live.run(() => writeSnapshot(this.#o.store, live)).catch((err) => this.#log.error({ err, doc: live.name }, 'snapshot failed'));
  }

  async digest(doc: DocName): Promise<string> {
    return this.withLive(doc, async (live) => digestOf(live));
  }

  async vectorAndDigest(doc: DocName, withDigest: boolean): Promise<{ vector: Vector; digest?: string }> {
    const live = this.#live.get(doc);
    if (!live) return { vector: await this.vector(doc) };
    const read = await live.run(async () => (live.retired ? undefined : { vector: { ...live.vector }, ...(withDigest ? { digest: digestOf(live) } : {}) }));
    return read ?? { vector: await this.vector(doc) };
  }

  /** Structs (in clock units) waiting in the pending sets of loaded documents. */
  pendingCount(): number {
    let n = 0;
    for (const live of this.#live.values()) for (const [, from, to] of [...pendingRanges(live.ydoc), ...parkedRanges(live)]) n += to - from;
    return n;
  }

  async sweep(): Promise<void> {
    const cutoff = this.#o.now() - this.#o.docIdleTimeoutMs;
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
    this.#held.drop(live);
    const done = live.run(() => writeSnapshot(this.#o.store, live)).catch((err) => this.#log.error({ err, doc: live.name }, 'snapshot of an unloaded document failed'));
    this.#unloading.set(live.name, done);
    await done;
    if (this.#unloading.get(live.name) === done) this.#unloading.delete(live.name);
  }

  /** Snapshots every loaded document, and waits for the snapshots of documents being unloaded (the store closes next). */
  async snapshotAll(): Promise<void> {
    for (const live of this.#live.values()) {
      await live.run(() => writeSnapshot(this.#o.store, live)).catch((err) => this.#log.error({ err, doc: live.name }, 'final snapshot failed'));
    }
    await Promise.all(this.#unloading.values());
  }
}
