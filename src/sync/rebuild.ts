import type { Logger } from 'pino';
import type { DocName, FeedKey } from '../types.js';
import { CorruptRecordError, Space, json, type StoreOp } from '../store/store.js';
import { encodeEnvelopeValue, envelopeKey, readFeed } from '../store/records.js';
import type { LiveDoc } from './live-doc.js';
import { feedOrigin } from './overlap.js';
import type { DocsContext, DocsOptions } from './docs-context.js';
import type { LoadedDocs } from './loaded-docs.js';

/** Documents derived again from their envelopes when the revocation cutoffs move. */
export class Rebuilder {
  readonly #ctx: DocsContext;
  readonly #o: DocsOptions;
  readonly #log: Logger;
  readonly #docs: LoadedDocs;

  constructor(ctx: DocsContext, docs: LoadedDocs) {
    this.#ctx = ctx;
    this.#o = ctx.options;
    this.#log = ctx.log;
    this.#docs = docs;
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
    for (const doc of this.#docs.names()) {
      try {
        const vector = await this.#docs.vector(doc);
        const touched = withDropped.has(doc) || Object.keys(vector).some((f) => origins.has(feedOrigin(f as FeedKey)));
        if (!touched) continue;
        await this.#docs.withLive(doc, (live) => this.#rederive(live));
      } catch (err) {
        // One document with a damaged record (it cannot be loaded anyway) must not stop the others, or every start that resumes this rebuild.
        if (!(err instanceof CorruptRecordError)) throw err;
        this.#log.error({ err, doc }, 'document left out of the rebuild: a record of it is damaged in the store');
        continue;
      }
      rebuilt.push(doc);
      this.#ctx.events.emit('rebuilt', doc);
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
        if (cut === undefined && this.#ctx.treatment(env) === 'drop') cut = env.seq - 1;
        if (cut !== undefined) {
          ops.push({ type: 'del', space: Space.envelope, key: envelopeKey(env.doc, env.feed, env.seq) });
          ops.push({ type: 'put', space: Space.dropped, key: envelopeKey(env.doc, env.feed, env.seq), value: encodeEnvelopeValue(env.token, env.update) });
        }
      }
      if (cut !== undefined) vector[feed] = cut;
      if (vector[feed] === 0) delete vector[feed];
    }
    const droppedNow = new Set(ops.filter((o) => o.type === 'put').map((o) => o.key));
    for await (const [key, value] of store.entries(Space.dropped, live.name + '\u0000')) {
      const [, feed, seqHex] = key.split('\u0000') as [string, FeedKey, string];
      const seq = parseInt(seqHex, 16);
      if (droppedNow.has(key)) continue;
      if (seq !== (vector[feed] ?? 0) + 1 || this.#ctx.treatment({ doc: live.name, feed, seq }) === 'drop') continue;
      ops.push({ type: 'del', space: Space.dropped, key });
      ops.push({ type: 'put', space: Space.envelope, key, value });
      vector[feed] = seq;
    }
    ops.push({ type: 'put', space: Space.vector, key: live.name, value: json.encode(vector) });
    ops.push({ type: 'del', space: Space.snapshot, key: live.name });
    await store.write(ops);
    await this.#docs.fill(live);
    live.sinceSnapshot = 1;
    this.#ctx.events.emit('change', live.name, { ...live.vector });
  }
}
