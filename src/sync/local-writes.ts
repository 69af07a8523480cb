import * as Y from 'yjs';
import type { DocName } from '../types.js';
import type { StoreOp } from '../store/store.js';
import { envelopeOps, type StoredEnvelope, type Vector } from '../store/records.js';
import { parseUpdate, structRanges, type ParsedStruct, type ParsedUpdate } from '../yjs/parse.js';
import { applyParsedUpdate } from '../yjs/cuts.js';
import { concatUpdates } from '../yjs/build.js';
import { signEnvelope, updateHash, type EnvelopeClaims } from './envelope.js';
import type { LiveDoc, LocalWrite, RefusedPart } from './live-doc.js';
import { filterOverlaps } from './equivocation.js';
import { dependsOnDropped, inDropped, joinTypingIn, mergeBounded, newPart, parkedRanges, pendingRanges, undeletedRuns } from './new-part.js';
import { copyDeferred, deferredKey, deferredOp, splitForEnvelopes, stageOverlaps } from './doc-records.js';
import type { DocsContext, DocsOptions } from './docs-context.js';
import { RETIRED, type LoadedDocs } from './loaded-docs.js';
import type { Parking } from './parking.js';
import { RevokedError } from '../errors.js';

/** What an app's update may carry: any number of structs and deletions (signed in as many envelopes as they need), no client twice at one place. */
const APP_UPDATE_LIMITS = { structs: Infinity, deleteRanges: Infinity, crowd: Infinity };

const MAX_LOCAL_BATCH_BYTES = 4 * 1024 * 1024;

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
 * Writes from local apps (DESIGN.md §4): what is new to this node in an
 * app's update becomes envelopes of this node's own feed, and so do
 * deletions that waited for their items.
 */
export class LocalWrites {
  readonly #ctx: DocsContext;
  readonly #o: DocsOptions;
  readonly #docs: LoadedDocs;
  readonly #parking: Parking;

  constructor(ctx: DocsContext, docs: LoadedDocs, parking: Parking) {
    this.#ctx = ctx;
    this.#o = ctx.options;
    this.#docs = docs;
    this.#parking = parking;
  }

  /**
   * Signs what is new to this node in an app's update, stores it, applies it
   * and resolves once durable. Updates that arrive while an envelope is being
   * signed and stored are merged into the next one.
   */
  async write(doc: DocName, update: Uint8Array, author?: object): Promise<{ vector: Vector; refused: RefusedPart[] }> {
    const started = performance.now();
    const done = await this.#enqueue(doc, parseUpdate(update, APP_UPDATE_LIMITS), update, author);
    this.#o.timings?.write((performance.now() - started) / 1000);
    return done;
  }

  async #enqueue(doc: DocName, parsed: ParsedUpdate, update: Uint8Array, author: object | undefined): Promise<{ vector: Vector; refused: RefusedPart[] }> {
    const live = await this.#docs.open(doc);
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
    return this.#docs.withLive(doc, async (live) => {
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
      this.#ctx.alarmEquivocation(live, refused, undefined);
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
    const signed = newPart(live, joined, refusedRanges, launders ? live.droppedDeletes : undefined, this.#o.maxDeferredRanges, () => this.#ctx.deferredOverflow(live), parsed);
    // Deferred deletions are acknowledged with the write: durable in the same batch.
    await this.#commitDeferred(live, before, saved, (ops) => (signed ? this.#commitLocal(live, signed.update, signed.parsed, ops, author) : this.#o.store.write(ops)));
    return { ...live.vector };
  }

  /** Signs deletions that were waiting for their items, once they are here. */
  async flushDeferred(live: LiveDoc): Promise<void> {
    // Signed now, they would be dropped at the next rebuild: they wait, stored, in case the revocation is lifted.
    if (this.#beyondOwnCutoff(live, 1)) return;
    const empty = new Uint8Array([0, 0]);
    const before = deferredKey(live);
    const saved = copyDeferred(live);
    const signed = newPart(live, empty, [], undefined, this.#o.maxDeferredRanges, () => this.#ctx.deferredOverflow(live));
    await this.#commitDeferred(live, before, saved, (ops) => (signed ? this.#commitLocal(live, signed.update, signed.parsed, ops) : this.#o.store.write(ops)));
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

  /** Whether any of the next `count` envelopes of this node's feed would be beyond its own cutoff (DESIGN.md §10). */
  #beyondOwnCutoff(live: LiveDoc, count: number): boolean {
    const feed = this.#ctx.ownFeed;
    const last = live.vector[feed] ?? 0;
    for (let seq = last + 1; seq <= last + count; seq++) if (this.#ctx.treatment({ doc: live.name, feed, seq }) !== 'apply') return true;
    return false;
  }

  /**
   * Signs, stores and applies one local change. A change that carries more
   * client ranges than fit one envelope token is split into several
   * envelopes (consecutive seqs, one atomic batch); deletions go in the last.
   */
  async #commitLocal(live: LiveDoc, update: Uint8Array, parsed: ParsedUpdate, extra: StoreOp[] = [], author?: object): Promise<void> {
    const ownFeed = this.#ctx.ownFeed;
    const parts = splitForEnvelopes(update, parsed);
    // What this node's own revocation would drop is refused, not acknowledged and lost at the next rebuild.
    if (this.#beyondOwnCutoff(live, parts.length)) throw new RevokedError('this node is revoked by an authority it trusts: its writes to this document are no longer kept');
    const envs: StoredEnvelope[] = [];
    const indexes: (() => void)[] = [];
    const ops: StoreOp[] = [];
    let seq = live.vector[ownFeed] ?? 0;
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
      const env: StoredEnvelope = { doc: live.name, feed: ownFeed, seq, token: signEnvelope(claims, this.#o.identity.privateKey), update: part.update };
      envs.push(env);
      const overlaps = stageOverlaps(live, env, part.parsed, this.#ctx.arrival());
      ops.push(...overlaps.ops);
      indexes.push(overlaps.index);
    }
    const vector = { ...live.vector, [ownFeed]: seq };
    await this.#o.store.write([...envelopeOps(envs, new Map([[live.name, vector]])), ...ops, ...extra]);
    for (const index of indexes) index();
    live.vector = vector;
    // Durable and counted: peers get it before the local apply, which does not change what they are sent.
    this.#docs.forward(live, envs, undefined);
    // The transaction's origin names the app that sent it all (if one did): see LocalOrigin.
    for (const [i, env] of envs.entries()) applyParsedUpdate(live.ydoc, env.update, parts[i]!.parsed, author && new LocalOrigin(author));
    await this.#parking.settle(live);
    this.#docs.afterCommit(live, envs);
  }
}
