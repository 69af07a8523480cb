import type { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { KeyPair } from '../identity/keys.js';
import type { DocName, FeedKey, NodeId } from '../types.js';
import { feedKey } from '../types.js';
import type { Store } from '../store/store.js';
import type { StoredEnvelope, Vector } from '../store/records.js';
import type { Treatment } from '../trust/trust.js';
import { parseUpdate } from '../yjs/parse.js';
import { readEnvelopeClaims } from './envelope.js';
import type { LiveDoc, RefusedPart } from './live-doc.js';
import { feedOrigin } from './overlap.js';
import { inDropped, parkedRanges, pendingRanges } from './new-part.js';
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

/**
 * What the parts of `Docs` share: its options, logger and events, this
 * node's own feed, and the steps that loading, local writes and received
 * envelopes take alike (arrival order, treatment under the revocations in
 * force, dropped content, alarms).
 */
export class DocsContext {
  readonly options: DocsOptions;
  readonly log: Logger;
  /** Where the events of `Docs` go out. */
  readonly events: EventEmitter<DocsEvents>;
  readonly ownFeed: FeedKey;

  constructor(opts: DocsOptions, log: Logger, events: EventEmitter<DocsEvents>) {
    this.options = opts;
    this.log = log;
    this.events = events;
    this.ownFeed = feedKey(opts.identity.id, opts.store.feed);
  }

  /**
   * Arrival order of kept envelopes, for the overlap index: increasing in
   * this process, and after a restart above what came before (it starts
   * from the clock, in 1/1024 ms).
   */
  #arrived = 0;
  arrival(): number {
    this.#arrived = Math.max(this.#arrived + 1, this.options.now() * 1024);
    return this.#arrived;
  }

  treatment(env: { doc: DocName; feed: FeedKey; seq: number }): Treatment {
    return this.options.policy.trust.treatment(feedOrigin(env.feed), env.doc, env.feed, env.seq);
  }

  /** Remembers a dropped envelope's struct ranges and deletions (for the laundering checks). */
  noteDropped(live: LiveDoc, env: { token: string; update: Uint8Array }): void {
    live.dropped.push(...readEnvelopeClaims(env.token).clients);
    for (const [client, ranges] of parseUpdate(env.update).deletes) for (const [clock, len] of ranges) live.droppedDeletes.push([client, clock, clock + len]);
  }

  deferredOverflow(live: LiveDoc): void {
    this.log.warn({ doc: live.name }, 'deletions waiting for their items passed their bound: the oldest client\'s were dropped');
  }

  alarmEquivocation(live: LiveDoc, refused: readonly RefusedPart[], peer: NodeId | undefined): void {
    for (const r of refused) this.events.emit('alarm', { doc: live.name, kind: 'equivocation', origins: [...r.origins], peer: peer ?? null });
  }

  /** Honest edits that wait on dropped content stay pending; an alarm names their clients. */
  alarmBlocked(live: LiveDoc, from: NodeId | undefined): void {
    if (!live.dropped.length) return;
    const missing = [...(live.ydoc.store.pendingStructs?.missing ?? []), ...live.parked.flatMap((p) => p.missing)];
    const blocked = missing.filter(([client, clock]) => inDropped(live.dropped, client, clock, clock + 1));
    if (!blocked.length) return;
    const clients = [...new Set([...pendingRanges(live.ydoc), ...parkedRanges(live)].map(([c]) => String(c)))];
    this.events.emit('alarm', { doc: live.name, kind: 'blocked_on_dropped', origins: clients, peer: from ?? null });
  }
}
