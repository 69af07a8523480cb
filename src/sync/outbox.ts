import type { Logger } from 'pino';
import type { DocName, FeedKey, NodeId } from '../types.js';
import type { Session } from '../net/session.js';
import { CorruptRecordError, type Store } from '../store/store.js';
import type { StoredEnvelope } from '../store/records.js';
import { Close } from '../protocol/close-codes.js';
import { grantsMessages } from '../protocol/messages.js';
import { readIntactFeed } from './doc-records.js';
import { feedOrigin } from './overlap.js';
import type { Policy } from './policy.js';
import type { SyncCounters } from './replicator.js';

export interface OutboxOptions {
  readonly session: Session;
  readonly store: Store;
  readonly policy: Policy;
  readonly log: Logger;
  readonly counters: SyncCounters;
  /** This node's own feed: with its envelopes it sends only the grants it presents for itself. */
  readonly ownFeed: FeedKey;
  /** Bytes that may wait to be sent to this peer (queued on the socket and in line) before it is dropped. */
  readonly maxQueuedBytes: number;
}

type RangeTask = { kind: 'range'; doc: DocName; feed: FeedKey; after: number; upTo: number };
type Task = RangeTask | { kind: 'one'; env: StoredEnvelope };
const rangeKey = (doc: DocName, feed: string): string => `${doc}\u0000${feed}`;

const HIGH_WATER = 1024 * 1024;
const FRAME_TARGET = 256 * 1024;
const FRAME_MAX_ITEMS = 512;
const MAX_TASKS = 100_000;

/**
 * What one session sends its peer (DESIGN.md §5): ranges of feeds the peer
 * wanted, read from the store in seq order, and envelopes pushed live as
 * they become durable, in frames of bounded size while the socket keeps up.
 * With the first envelopes of each origin go the grants that vouch for it.
 * A peer that lets more than `maxQueuedBytes` wait is dropped.
 */
export class Outbox {
  readonly #o: OutboxOptions;
  readonly #peer: NodeId;
  readonly #tasks: Task[] = [];
  /** The range task queued (or being sent) per document and feed: a want merges with it. */
  readonly #ranges = new Map<string, RangeTask>();
  /** Origins whose grants were already sent in this session. */
  readonly #grantsSent = new Set<string>();
  /** Bytes of live-push envelopes waiting in #tasks. */
  #taskBytes = 0;
  #pumping = false;
  #pumpScheduled = false;
  /** Set while the turn in which one envelope was sent on its own lasts. */
  #sentThisTurn = false;
  #stopped = false;

  constructor(opts: OutboxOptions) {
    this.#o = opts;
    this.#peer = opts.session.peer;
    opts.session.on('drain', () => void this.pump());
  }

  stop(): void {
    this.#stopped = true;
    this.#tasks.length = 0;
    this.#ranges.clear();
  }

  /** Sends grants and revocations inside the session, in messages within the protocol's limits. */
  sendGrants(grants: readonly string[], revocations: readonly string[]): void {
    if (this.#stopped) return;
    for (const m of grantsMessages(grants, revocations)) if (m.grants.length || m.revocations.length) this.#o.session.send(m);
  }

  /**
   * Queues seqs after `have` up to `upTo` of one feed. A range of this feed
   * already on its way takes it in (from the lower start, so what the peer
   * says it lacks is sent again) instead of a second pass: repeated wants
   * cost one pass, not one each. False when the queue is full (what is left
   * out comes with the next want).
   */
  addRange(doc: DocName, feed: FeedKey, have: number, upTo: number): boolean {
    const key = rangeKey(doc, feed);
    const queued = this.#ranges.get(key);
    if (queued) {
      queued.after = Math.min(queued.after, have);
      queued.upTo = Math.max(queued.upTo, upTo);
      return true;
    }
    if (this.#tasks.length >= MAX_TASKS) return false;
    const task: RangeTask = { kind: 'range', doc, feed, after: have, upTo };
    this.#ranges.set(key, task);
    this.#tasks.push(task);
    return true;
  }

  /** Queues one envelope pushed live; false (and the session closed) when the peer cannot keep up. */
  push(env: StoredEnvelope): boolean {
    const size = env.token.length + env.update.byteLength;
    if (this.#tasks.length >= MAX_TASKS || this.#taskBytes + size + this.#o.session.queuedBytes > this.#o.maxQueuedBytes) {
      // Its next session catches up from vectors.
      this.#o.session.close(Close.slowPeer, `more than ${this.#o.maxQueuedBytes} bytes waiting to be sent`);
      this.stop();
      return false;
    }
    this.#taskBytes += size;
    this.#tasks.push({ kind: 'one', env });
    // The first envelope of a turn with nothing else waiting leaves at once (a
    // single edit is not held back behind the local apply). The rest of the
    // turn's envelopes (one group commit makes many durable together) leave in
    // one frame: their continuations all run as microtasks of the same turn,
    // and a next-tick callback queued from one of them runs once all have (a
    // setImmediate would also wait for the event loop's I/O phase).
    if (this.#tasks.length === 1 && !this.#pumping && !this.#pumpScheduled && !this.#sentThisTurn) {
      this.#sentThisTurn = true;
      process.nextTick(() => (this.#sentThisTurn = false));
      void this.pump();
      return true;
    }
    if (!this.#pumpScheduled) {
      this.#pumpScheduled = true;
      process.nextTick(() => {
        this.#pumpScheduled = false;
        void this.pump();
      });
    }
    return true;
  }

  /** Sends queued envelopes in frames of bounded size while the socket keeps up. */
  async pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    const session = this.#o.session;
    try {
      while (!this.#stopped && this.#tasks.length && session.queuedBytes < HIGH_WATER && !session.closed) {
        const { items, bytes } = await this.#nextFrame();
        if (!items.length) continue;
        const grants: string[] = [];
        for (const origin of new Set(items.map((item) => feedOrigin(item.feed)))) {
          if (this.#grantsSent.has(origin)) continue;
          this.#grantsSent.add(origin);
          // With its own envelopes a node sends only the grants it presents for itself: a peer counts those as presented by their subject.
          const trust = this.#o.policy.trust;
          grants.push(...(origin === feedOrigin(this.#o.ownFeed) ? trust.presentedGrantsFor(origin) : trust.rawGrantsFor(origin)));
        }
        // However many origins one frame carries, each grants message stays within the protocol's limits.
        if (grants.length) this.sendGrants(grants, []);
        session.send({ type: 'envelopes', items });
        this.#o.counters.envelopesOut += items.length;
        this.#o.counters.bytesOut += bytes;
      }
    } catch (err) {
      this.#o.log.error({ err }, 'sending envelopes failed');
    } finally {
      this.#pumping = false;
    }
  }

  /** The envelopes of the next frame, from the head of the queue: what the peer may still read, up to a frame's size. */
  async #nextFrame(): Promise<{ items: StoredEnvelope[]; bytes: number }> {
    const items: StoredEnvelope[] = [];
    let bytes = 0;
    while (this.#tasks.length && bytes < FRAME_TARGET && items.length < FRAME_MAX_ITEMS) {
      const task = this.#tasks[0]!;
      if (task.kind === 'one') {
        this.#tasks.shift();
        this.#taskBytes -= task.env.token.length + task.env.update.byteLength;
        if (!this.#o.policy.mayRead(this.#peer, task.env.doc)) continue;
        items.push(task.env);
        bytes += task.env.token.length + task.env.update.byteLength;
        continue;
      }
      if (!this.#o.policy.mayRead(this.#peer, task.doc)) {
        this.#endRange(task);
        continue;
      }
      const room = FRAME_MAX_ITEMS - items.length;
      const from = task.after;
      let last = from;
      try {
        for await (const env of readIntactFeed(this.#o.store, task.doc, task.feed, from, Math.min(room, task.upTo - from))) {
          items.push(env);
          bytes += env.token.length + env.update.byteLength;
          last = env.seq;
          if (bytes >= FRAME_TARGET) break;
        }
      } catch (err) {
        // A damaged envelope is not sent (the peer would count it as forged); the rest of that feed waits for another peer to bring it.
        if (!(err instanceof CorruptRecordError)) throw err;
        this.#o.log.error({ err, doc: task.doc, feed: task.feed }, 'a stored envelope is damaged: the rest of its feed is not sent to this peer');
        this.#endRange(task);
        continue;
      }
      // A want merged in meanwhile from a lower start: the task goes on from there.
      if (task.after < from) continue;
      if (last >= task.upTo || last === from) this.#endRange(task);
      else task.after = last;
    }
    return { items, bytes };
  }

  /** Takes the range task at the head of the queue off it. */
  #endRange(task: RangeTask): void {
    this.#tasks.shift();
    const key = rangeKey(task.doc, task.feed);
    if (this.#ranges.get(key) === task) this.#ranges.delete(key);
  }
}
