import type { Logger } from 'pino';
import type { PeerManager } from '../net/peer-manager.js';
import type { Session } from '../net/session.js';
import { Space, json, type Store } from '../store/store.js';
import type { Docs } from './docs.js';
import type { Policy } from './policy.js';
import { Replicator, type SyncCounters } from './replicator.js';

/**
 * Joins the peer sessions and the documents: one replicator per kept
 * session, every new envelope offered to each of them.
 */
export class SyncService {
  readonly #peers: PeerManager;
  readonly #docs: Docs;
  readonly #store: Store;
  readonly #policy: Policy;
  readonly #log: Logger;
  readonly #replicators = new Map<Session, Replicator>();
  readonly counters: SyncCounters = { envelopesIn: 0, envelopesOut: 0, refused: new Map(), bytesIn: 0, bytesOut: 0 };

  readonly #announceInterval: number;
  readonly #maxQueuedBytes: number;

  constructor(opts: { peers: PeerManager; docs: Docs; store: Store; policy: Policy; log: Logger; announceInterval: number; maxQueuedBytes: number }) {
    this.#announceInterval = opts.announceInterval;
    this.#maxQueuedBytes = opts.maxQueuedBytes;
    this.#peers = opts.peers;
    this.#docs = opts.docs;
    this.#store = opts.store;
    this.#policy = opts.policy;
    this.#log = opts.log;
  }

  start(): void {
    this.#peers.on('session', (session) => this.#attach(session));
    this.#docs.on('envelope', (env, from) => {
      for (const r of this.#replicators.values()) r.onEnvelope(env, from);
    });
    const trust = this.#policy.trust;
    // New trusted grants: what their subjects wrote, refused before, may be accepted now.
    trust.on('grants', (subjects) => {
      for (const r of this.#replicators.values()) r.forgetRefused(subjects).catch((err) => this.#log.error({ err }, 'wanting refused feeds again failed'));
    });
    trust.on('revocations', () => {
      this.#changes = this.#changes.then(() => this.#onRevocations()).catch((err) => this.#log.error({ err }, 'applying a revocation change failed'));
    });
  }

  /**
   * At start: if the revocations in force differ from those the documents
   * were last derived under (a revocation stored just before a crash, or a
   * peers file edited while the node was stopped), rebuild now.
   */
  async reconcile(): Promise<void> {
    const applied = await this.#store.getJson<{ fingerprint: string; revoked: string[] }>(Space.meta, 'revocations');
    const trust = this.#policy.trust;
    this.#revoked = new Set(applied?.revoked ?? []);
    if ((applied?.fingerprint ?? '') !== trust.fingerprint) await this.#onRevocations();
  }

  #revoked = new Set<string>();
  #changes: Promise<void> = Promise.resolve();

  /**
   * The revocations in force changed: cut revoked nodes off, pass the
   * revocations on to every peer, rebuild the documents they touch, and
   * want again what may now be accepted.
   */
  async #onRevocations(): Promise<void> {
    const trust = this.#policy.trust;
    const now = trust.revokedNodes();
    const affected = new Set([...this.#revoked, ...now]);
    this.#revoked = now;
    await this.#peers.recheck();
    for (const r of this.#replicators.values()) r.sendGrants([], trust.rawRevocations());
    await this.#docs.rebuild(affected);
    await this.#store.write([{ type: 'put', space: Space.meta, key: 'revocations', value: json.encode({ fingerprint: trust.fingerprint, revoked: [...now] }) }]);
    this.refresh();
  }

  /** Own grants file changed: send the refreshed grants and revocations to every peer inside its session. */
  sendGrants(grants: readonly string[], revocations: readonly string[]): void {
    for (const r of this.#replicators.values()) r.sendGrants(grants, revocations);
  }

  #attach(session: Session): void {
    const r = new Replicator({ session, docs: this.#docs, store: this.#store, policy: this.#policy, log: this.#log, counters: this.counters, maxQueuedBytes: this.#maxQueuedBytes });
    r.announceEvery(this.#announceInterval);
    this.#replicators.set(session, r);
    session.once('close', () => {
      r.stop();
      this.#replicators.delete(session);
    });
    r.start().catch((err) => this.#log.error({ err, peer: session.peer }, 'announcing documents failed'));
  }

  /** After a config change: every session announces again and forgets its refusals. */
  refresh(): void {
    for (const r of this.#replicators.values()) r.refresh().catch((err) => this.#log.error({ err }, 're-announcing failed'));
  }

  /** Replication lag per peer (envelopes held here that the peer is not known to hold). */
  async lagByPeer(): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for (const [session, r] of this.#replicators) out.set(session.peer, await r.lag());
    return out;
  }

  stop(): void {
    for (const r of this.#replicators.values()) r.stop();
    this.#replicators.clear();
  }
}
