import type { Logger } from 'pino';
import type { PeerManager } from '../net/peer-manager.js';
import type { Session } from '../net/session.js';
import type { Store } from '../store/store.js';
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

  constructor(opts: { peers: PeerManager; docs: Docs; store: Store; policy: Policy; log: Logger }) {
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
  }

  #attach(session: Session): void {
    const r = new Replicator({ session, docs: this.#docs, store: this.#store, policy: this.#policy, log: this.#log, counters: this.counters });
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
