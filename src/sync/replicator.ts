import type { Logger } from 'pino';
import type { DocName, FeedKey, NodeId } from '../types.js';
import type { Session } from '../net/session.js';
import { CorruptRecordError, type Store } from '../store/store.js';
import type { StoredEnvelope, Vector } from '../store/records.js';
import { Close } from '../protocol/close-codes.js';
import type { AnnounceEntry, SessionMessage } from '../protocol/messages.js';
import type { Docs } from './docs.js';
import type { Policy } from './policy.js';
import { lag, vectorHash } from './vector.js';
import { Declined, Refusals } from './refusals.js';
import { VerifyBudget } from '../trust/trust.js';
import { Inbox } from './inbox.js';
import { Outbox } from './outbox.js';

export interface ReplicatorOptions {
  readonly session: Session;
  readonly docs: Docs;
  readonly store: Store;
  readonly policy: Policy;
  readonly log: Logger;
  readonly counters: SyncCounters;
  /** Bytes that may wait to be sent to this peer (queued on the socket and in line) before it is dropped. */
  readonly maxQueuedBytes: number;
  /** Forged envelopes tolerated from one session before it is closed. */
  readonly maxForgeries?: number;
}

/** Counters the metrics endpoint reads. */
export interface SyncCounters {
  envelopesIn: number;
  envelopesOut: number;
  refused: Map<string, number>;
  bytesIn: number;
  bytesOut: number;
}

/**
 * Grants and revocations claiming a trusted authority that fail to verify,
 * tolerated from one session; beyond them, its tokens that would need a
 * signature check are ignored for the rest of the session (an honest relay
 * may pass on a few forgeries it could not check itself, so it is not cut
 * off; the next session starts afresh).
 */
const MAX_FORGED_TOKENS = 64;
const ANNOUNCE_CHUNK = 5000;

/**
 * The sync protocol over one session (DESIGN.md §5), driven by the sender:
 * announce what the peer may read, answer its `want` with the envelopes it
 * lacks in seq order per feed, then push every new envelope live. Sending
 * respects the socket's backpressure; received messages are handled one at
 * a time, in order.
 */
export class Replicator {
  readonly #o: ReplicatorOptions;
  readonly #peer: NodeId;
  readonly #log: Logger;
  /** What this node believes the peer holds, per document. */
  readonly #peerVectors = new Map<DocName, Vector>();
  /** Feeds the peer said it does not want, per document. */
  readonly #declined = new Declined();
  /** What this node refused from the peer in this session. */
  readonly #refused = new Refusals();
  readonly #outbox: Outbox;
  readonly #inbox: Inbox;
  #tookFirstGrants!: () => void;
  /** Later messages are handled once the first grants message is: the grants in it vouch for the envelopes that follow. */
  readonly #firstGrants = new Promise<void>((resolve) => (this.#tookFirstGrants = resolve));
  #forgeries = 0;
  #stopped = false;

  constructor(opts: ReplicatorOptions) {
    this.#o = opts;
    this.#peer = opts.session.peer;
    this.#log = opts.log.child({ component: 'sync', peer: this.#peer });
    this.#outbox = new Outbox({ session: opts.session, store: opts.store, policy: opts.policy, log: this.#log, counters: opts.counters, ownFeed: opts.docs.ownFeed, maxQueuedBytes: opts.maxQueuedBytes });
    this.#inbox = new Inbox(opts.session, this.#firstGrants, (m) => this.#handleSafely(m));
    opts.session.on('message', (m, bytes) => {
      opts.counters.bytesIn += bytes;
      this.#inbox.push(m, bytes);
    });
    // A refreshed grant may let the peer exchange documents refused before.
    opts.session.on('grant', () => void this.#wantUnexchangeable().catch((err) => this.#log.error({ err }, 'wanting refused documents again failed')));
  }

  /** Takes in the peer's first grants message (before any later message of the peer), then announces. */
  async start(): Promise<void> {
    const first = this.#o.session.peerGrants;
    try {
      if (first) await this.#onGrants(first.grants, first.revocations);
    } finally {
      this.#tookFirstGrants();
    }
    await this.#announce();
  }

  /**
   * Grants travel with envelopes; revocations spread by themselves (DESIGN.md
   * §10). Grants naming the peer itself count as presented by it (its
   * opening, a refreshed grant, those with its own envelopes): an honest node
   * sends only those for itself, never what others pushed naming it.
   */
  async #onGrants(grants: readonly string[], revocations: readonly string[]): Promise<void> {
    const trust = this.#o.policy.trust;
    if (grants.length) await trust.addGrants(grants, { presenter: this.#peer, budget: this.#verifyBudget });
    if (revocations.length) await trust.addRevocations(revocations, { budget: this.#verifyBudget });
  }

  readonly #verifyBudget = new VerifyBudget(MAX_FORGED_TOKENS, () =>
    this.#log.warn({ forged: MAX_FORGED_TOKENS }, 'peer passed on too many grants or revocations that do not verify; the rest of its tokens that need a check are ignored this session'),
  );

  /** Sends grants and revocations inside the session (a refreshed grant, a new revocation), in messages within the protocol's limits. */
  sendGrants(grants: readonly string[], revocations: readonly string[]): void {
    if (!this.#stopped) this.#outbox.sendGrants(grants, revocations);
  }

  /** Announces every document the peer may read, in messages of bounded size. */
  async #announce(): Promise<void> {
    let docs: AnnounceEntry[] = [];
    for (const name of this.#o.docs.names()) {
      if (!this.#o.policy.mayRead(this.#peer, name)) continue;
      const read = await this.#unlessCorrupt(name, () => this.#o.docs.vectorAndDigest(name));
      if (!read) continue;
      const { vector, digest } = read;
      const hash = vectorHash(vector);
      docs.push(digest ? [name, hash, digest] : [name, hash]);
      if (docs.length >= ANNOUNCE_CHUNK) {
        this.#send({ type: 'announce', docs });
        docs = [];
      }
    }
    if (docs.length || this.#o.docs.count === 0) this.#send({ type: 'announce', docs });
  }

  /**
   * After a change of the peers file or of the revocations in force: forget
   * the peer's notWanted and this node's refusals, announce again, and want
   * again every document this node refused feeds of, so the peer re-sends
   * what may now be accepted.
   */
  async refresh(): Promise<void> {
    this.#declined.clear();
    await this.#announce();
    // With the refusals forgotten, the true vectors: what was refused may be accepted now.
    await this.#wantAgain(this.#refused.clear());
  }

  /** Forgets the refusals of feeds these origins wrote, and wants their documents again (true vectors for those feeds). */
  async forgetRefused(origins: ReadonlySet<string>): Promise<void> {
    if (this.#stopped) return;
    await this.#wantAgain(this.#refused.forgetOrigins(origins));
  }

  /** Wants again the documents refused because the peer could not exchange them, that it may exchange now. */
  async #wantUnexchangeable(): Promise<void> {
    await this.#wantAgain(this.#refused.forgetUnexchangeable((doc) => this.#o.policy.mayExchange(this.#peer, doc)));
  }

  async #wantAgain(docs: readonly DocName[]): Promise<void> {
    if (this.#stopped) return;
    const want: Record<string, Vector> = {};
    for (const doc of docs) {
      const ours = this.#o.policy.mayExchange(this.#peer, doc) ? await this.#vectorOf(doc) : undefined;
      if (ours) want[doc] = this.#refused.counted(doc, ours);
    }
    if (Object.keys(want).length) this.#send({ type: 'want', docs: want });
  }

  stop(): void {
    this.#stopped = true;
    this.#outbox.stop();
    this.#inbox.stop();
    clearInterval(this.#reannounce);
  }

  #reannounce: NodeJS.Timeout | undefined;

  /** Announces again every `ms`: catches anything a lost message left behind, and re-checks digests. */
  announceEvery(ms: number): void {
    this.#reannounce = setInterval(() => void this.#announce().catch((err) => this.#log.error({ err }, 're-announcing failed')), ms);
    this.#reannounce.unref();
  }

  /** Envelopes this node holds that the peer is not known to hold, over the documents it wanted. */
  async lag(): Promise<number> {
    let n = 0;
    for (const [doc, theirs] of this.#peerVectors) n += lag((await this.#vectorOf(doc)) ?? theirs, theirs);
    return n;
  }

  /** A new envelope is durable here: push it unless the peer has it, sent it, or may not read it. */
  onEnvelope(env: StoredEnvelope, from: NodeId | undefined): void {
    if (this.#stopped) return;
    const theirs = this.#peerVectors.get(env.doc) ?? {};
    if (from === this.#peer) {
      if ((theirs[env.feed] ?? 0) < env.seq) this.#peerVectors.set(env.doc, { ...theirs, [env.feed]: env.seq });
      return;
    }
    if (!this.#o.policy.mayRead(this.#peer, env.doc) || this.#declined.has(env.doc, env.feed)) return;
    if ((theirs[env.feed] ?? 0) >= env.seq) return;
    this.#peerVectors.set(env.doc, { ...theirs, [env.feed]: env.seq });
    // The peer cannot keep up: it is dropped, and its next session catches up from vectors.
    if (!this.#outbox.push(env)) this.stop();
  }

  /**
   * What `read` gives for one document, or undefined when a record of that
   * document is damaged in the store: it is left out of the exchange (the
   * load says so in the log), and the others go on.
   */
  async #unlessCorrupt<T>(doc: DocName, read: () => Promise<T>): Promise<T | undefined> {
    try {
      return await read();
    } catch (err) {
      if (!(err instanceof CorruptRecordError)) throw err;
      if (!this.#corrupt.has(doc)) this.#log.error({ err, doc }, 'document left out of replication: a record of it is damaged in the store');
      this.#corrupt.add(doc);
      return undefined;
    }
  }

  /** A document's vector, or undefined when a record of it is damaged. */
  #vectorOf(doc: DocName): Promise<Vector | undefined> {
    return this.#unlessCorrupt(doc, () => this.#o.docs.vector(doc));
  }

  /** Documents already logged as left out for a damaged record, in this session. */
  readonly #corrupt = new Set<DocName>();

  #send(m: SessionMessage): void {
    this.#o.session.send(m);
  }

  /** A received message, once the inbox takes it up; a failure closes the session. */
  async #handleSafely(m: SessionMessage): Promise<void> {
    try {
      await this.#handle(m);
    } catch (err) {
      this.#log.error({ err }, 'sync message handling failed');
      this.#o.session.close(Close.protocolError, 'internal error handling a sync message');
    }
  }

  async #handle(m: SessionMessage): Promise<void> {
    if (this.#stopped) return;
    switch (m.type) {
      case 'announce':
        return this.#onAnnounce(m.docs);
      case 'want':
        return this.#onWant(m.docs);
      case 'envelopes':
        return this.#onEnvelopes(m.items);
      case 'notWanted':
        for (const [doc, feed] of m.items) {
          // What this node would never send anyway is not worth remembering: a peer cannot grow the set with made-up names.
          if (!this.#o.docs.has(doc as DocName) || !this.#o.policy.mayRead(this.#peer, doc as DocName)) continue;
          if (!this.#declined.add(doc as DocName, feed)) break;
        }
        return;
      case 'grants':
        return this.#onGrants(m.grants, m.revocations);
    }
  }

  async #onAnnounce(docs: readonly AnnounceEntry[]): Promise<void> {
    const want: Record<string, Vector> = {};
    for (const [name, hash, digest] of docs) {
      const doc = name as DocName;
      if (!this.#o.policy.mayExchange(this.#peer, doc)) continue;
      // A digest is only worth computing when the peer sent one to compare with.
      const read = await this.#unlessCorrupt(doc, () => this.#o.docs.vectorAndDigest(doc, digest !== undefined));
      if (!read) continue;
      const { vector: ours, digest: mine } = read;
      const counted = this.#refused.counted(doc, ours);
      if (vectorHash(counted) !== hash) {
        want[doc] = counted;
        continue;
      }
      // The backstop (DESIGN.md §4): equal vectors with different state digests (not comparable when refused feeds count as held).
      if (counted === ours && digest !== undefined && mine !== undefined && mine !== digest) {
        this.#o.docs.alarm({ doc, kind: 'digest_mismatch', origins: [], peer: this.#peer });
      }
    }
    if (Object.keys(want).length) this.#send({ type: 'want', docs: want });
  }

  async #onWant(docs: Readonly<Record<string, Readonly<Vector>>>): Promise<void> {
    let skipped = 0;
    for (const [name, theirs] of Object.entries(docs)) {
      const doc = name as DocName;
      if (!this.#o.policy.mayRead(this.#peer, doc) || !this.#o.docs.has(doc)) continue;
      // A want withdraws the peer's earlier refusals for this document.
      this.#declined.withdraw(doc);
      const ours = await this.#vectorOf(doc);
      if (!ours) continue;
      this.#peerVectors.set(doc, { ...theirs });
      for (const [feed, seq] of Object.entries(ours)) {
        const have = theirs[feed] ?? 0;
        // Bounded like live pushes; what is left out comes with the next want (the next announce brings one).
        if (seq > have && !this.#outbox.addRange(doc, feed as FeedKey, have, seq)) skipped++;
      }
    }
    if (skipped) this.#log.warn({ skipped }, 'too many feeds wanted at once; the rest waits for the next want');
    void this.#outbox.pump();
  }

  async #onEnvelopes(items: readonly { token: string; update: Uint8Array }[]): Promise<void> {
    const out = await this.#o.docs.receive(this.#peer, items);
    const c = this.#o.counters;
    c.envelopesIn += out.accepted;
    const notWanted: [string, string][] = [];
    // One line per feed and reason, not one per envelope: a refused feed can be thousands of them.
    const lines = new Map<string, { doc: string; feed: string; seq: number; lastSeq: number; count: number; reason: string; detail: string }>();
    for (const r of out.refused) {
      c.refused.set(r.reason, (c.refused.get(r.reason) ?? 0) + 1);
      if (r.reason === 'forgery') this.#forgeries++;
      if (r.reason === 'not_wanted' || r.reason === 'not_exchangeable') notWanted.push([r.doc, r.feed]);
      if (r.reason === 'not_wanted') this.#refused.noteFeed(r.doc, r.feed, r.seq);
      if (r.reason === 'not_exchangeable') this.#refused.noteUnexchangeable(r.doc);
      const key = JSON.stringify([r.doc, r.feed, r.reason, r.detail]);
      const line = lines.get(key);
      if (line) {
        line.seq = Math.min(line.seq, r.seq);
        line.lastSeq = Math.max(line.lastSeq, r.seq);
        line.count++;
      } else lines.set(key, { doc: r.doc, feed: r.feed, seq: r.seq, lastSeq: r.seq, count: 1, reason: r.reason, detail: r.detail });
    }
    for (const line of lines.values()) this.#log.warn(line, 'envelope refused');
    if (notWanted.length) this.#send({ type: 'notWanted', items: dedupe(notWanted) });
    if (out.rewant.size) {
      const want: Record<string, Vector> = {};
      for (const doc of out.rewant) {
        const ours = await this.#vectorOf(doc);
        if (ours) want[doc] = this.#refused.counted(doc, ours);
      }
      if (Object.keys(want).length) this.#send({ type: 'want', docs: want });
    }
    if (this.#forgeries > (this.#o.maxForgeries ?? 16)) this.#o.session.close(Close.forgery, `${this.#forgeries} forged envelopes`);
  }
}

function dedupe(items: [string, string][]): [string, string][] {
  return [...new Map(items.map((i) => [i.join('\u0000'), i])).values()];
}
