import { EventEmitter } from 'node:events';
import type { DocName, FeedKey, NodeId } from '../types.js';
import type { Vector } from '../store/records.js';
import { Verifier } from './verifier.js';
import type { LiveDoc, RefusedPart } from './live-doc.js';
import { DocsContext, type DocsEvents, type DocsOptions } from './docs-context.js';
import { LoadedDocs } from './loaded-docs.js';
import { LocalWrites } from './local-writes.js';
import { Receiver, type ReceiveOutcome } from './receive.js';
import { Rebuilder } from './rebuild.js';
import { Parking } from './parking.js';
import { HeldEnvelopes } from './held.js';

export type { DocsEvents, DocsOptions } from './docs-context.js';
export type { ReceiveOutcome, RefusalReason } from './receive.js';
export { LocalOrigin } from './local-writes.js';

/**
 * The documents of this node: loaded lazily from snapshot plus envelopes,
 * unloaded when idle. Local app updates become origin-signed envelopes of
 * exactly what is new here; received envelopes are checked, stored and
 * applied. Every envelope is durable before it is applied, forwarded or
 * acknowledged.
 */
export class Docs extends EventEmitter<DocsEvents> {
  readonly #ctx: DocsContext;
  readonly #docs: LoadedDocs;
  readonly #local: LocalWrites;
  readonly #receiver: Receiver;
  readonly #rebuilder: Rebuilder;
  #sweeper: NodeJS.Timeout | undefined;
  readonly #verifier: Verifier;

  constructor(opts: DocsOptions) {
    super();
    const log = opts.log.child({ component: 'docs' });
    this.#ctx = new DocsContext(opts, log, this);
    this.#verifier = new Verifier({ log });
    // One listener per SSE stream and per session: their number is not a leak.
    this.setMaxListeners(0);
    const parking = new Parking(opts, log);
    const held = new HeldEnvelopes(opts);
    this.#docs = new LoadedDocs(this.#ctx, parking, held);
    this.#local = new LocalWrites(this.#ctx, this.#docs, parking);
    this.#receiver = new Receiver(this.#ctx, { docs: this.#docs, local: this.#local, parking, held, verifier: this.#verifier });
    this.#rebuilder = new Rebuilder(this.#ctx, this.#docs);
  }

  get ownFeed(): FeedKey {
    return this.#ctx.ownFeed;
  }

  /** Loads the names of stored documents, and starts the idle sweeper. */
  async start(): Promise<void> {
    await this.#docs.loadNames();
    await this.#receiver.loadRemembered();
    this.#sweeper = setInterval(() => void this.#docs.sweep(), Math.max(1000, Math.min(this.#ctx.options.docIdleTimeoutMs / 2, 60_000)));
    this.#sweeper.unref();
  }

  /** Names of every document this node holds. */
  names(): DocName[] {
    return this.#docs.names();
  }

  get count(): number {
    return this.#docs.count;
  }

  get loadedCount(): number {
    return this.#docs.loadedCount;
  }

  has(doc: DocName): boolean {
    return this.#docs.has(doc);
  }

  vector(doc: DocName): Promise<Vector> {
    return this.#docs.vector(doc);
  }

  /** The live document, loading it if needed (`acquire` keeps it loaded until released). */
  open(doc: DocName): Promise<LiveDoc> {
    return this.#docs.open(doc);
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

  /** Signs what is new to this node in an app's update, stores and applies it; resolves once durable. */
  write(doc: DocName, update: Uint8Array, author?: object): Promise<{ vector: Vector; refused: RefusedPart[] }> {
    return this.#local.write(doc, update, author);
  }

  /** Whether an update carries anything new to this node: what a read-only app may not send. */
  hasNew(doc: DocName, update: Uint8Array): Promise<boolean> {
    return this.#local.hasNew(doc, update);
  }

  /** Checks, stores and applies envelopes received from a peer (DESIGN.md §4). */
  receive(from: NodeId, items: readonly { token: string; update: Uint8Array }[]): Promise<ReceiveOutcome> {
    return this.#receiver.receive(from, items);
  }

  /**
   * Re-derives every document after the revocations in force changed
   * (DESIGN.md §2), crash-safe. Resolves with the documents rebuilt.
   */
  rebuild(origins: ReadonlySet<string>): Promise<DocName[]> {
    return this.#rebuilder.rebuild(origins);
  }

  /** Resumes a rebuild that a crash interrupted. */
  resumeRebuild(): Promise<void> {
    return this.#rebuilder.resumeRebuild();
  }

  /** Structs (in clock units) waiting in the pending sets of loaded documents. */
  pendingCount(): number {
    return this.#docs.pendingCount();
  }

  /** SHA-256 of the document's encoded state: equal on every node that holds the same envelopes. */
  digest(doc: DocName): Promise<string> {
    return this.#docs.digest(doc);
  }

  /**
   * A document's vector and, if it is loaded (announcing never loads one), its
   * digest, read together under its lock: a change being applied meanwhile
   * shows in both or in neither, so equal vectors with different digests
   * mean different states, not a read in the middle of a change.
   */
  vectorAndDigest(doc: DocName, withDigest = true): Promise<{ vector: Vector; digest?: string }> {
    return this.#docs.vectorAndDigest(doc, withDigest);
  }

  /** Raises an alarm (for checks made outside this class, such as the digest backstop). */
  alarm(alarm: { doc: DocName; kind: string; origins: string[]; peer: string | null }): void {
    this.emit('alarm', alarm);
  }

  /** Snapshots every loaded document and stops the sweeper. */
  async stop(): Promise<void> {
    clearInterval(this.#sweeper);
    await this.#verifier.close();
    await this.#docs.snapshotAll();
  }
}
