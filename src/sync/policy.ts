import type { KeyObject } from 'node:crypto';
import { anyGlobMatches } from '../config/glob.js';
import type { PeerEntry, PeersConfig } from '../config/peers.js';
import { importPublicJwk, type KeyPair } from '../identity/keys.js';
import type { DocName, NodeId, PublicJwk } from '../types.js';

/**
 * Who may do what, read live from the current peers file (so a narrowed
 * permission applies to the next message). `read`: documents this node sends
 * to a peer; `write`: documents whose updates authored by the peer it accepts;
 * a peer may exchange (relay) a document matching either.
 */
export class Policy {
  readonly #self: KeyPair;
  readonly #peers: () => PeersConfig;
  readonly #keys = new Map<string, KeyObject>();
  #indexed: PeersConfig | undefined;
  #byId = new Map<NodeId, PeerEntry>();

  constructor(self: KeyPair, peers: () => PeersConfig) {
    this.#self = self;
    this.#peers = peers;
  }

  get selfId(): NodeId {
    return this.#self.id;
  }

  entry(id: NodeId): PeerEntry | undefined {
    const current = this.#peers();
    if (current !== this.#indexed) {
      this.#indexed = current;
      this.#byId = new Map(current.peers.map((p) => [p.id, p]));
    }
    return this.#byId.get(id);
  }

  /** The key that may sign new envelopes for `origin`, or undefined when this node does not trust it now. */
  authorKey(origin: NodeId): KeyObject | undefined {
    if (origin === this.#self.id) return this.#self.publicKey;
    const e = this.entry(origin);
    if (!e || e.revoked) return undefined;
    let k = this.#keys.get(e.publicKey.x);
    if (!k) {
      k = importPublicJwk(e.publicKey);
      this.#keys.set(e.publicKey.x, k);
    }
    return k;
  }

  /** The public JWK of an origin this node trusts now (itself, or a peers entry). */
  authorJwk(origin: NodeId): PublicJwk | undefined {
    if (origin === this.#self.id) return this.#self.publicJwk;
    const e = this.entry(origin);
    return e && !e.revoked ? e.publicKey : undefined;
  }

  /** A display name for an origin: its peers-file name, or undefined. */
  nameOf(origin: NodeId): string | undefined {
    return this.entry(origin)?.name;
  }

  mayWrite(origin: NodeId, doc: DocName): boolean {
    if (origin === this.#self.id) return true;
    const e = this.entry(origin);
    return !!e && !e.revoked && anyGlobMatches(e.write, doc);
  }

  mayRead(peer: NodeId, doc: DocName): boolean {
    const e = this.entry(peer);
    return !!e && !e.revoked && anyGlobMatches(e.read, doc);
  }

  mayExchange(peer: NodeId, doc: DocName): boolean {
    const e = this.entry(peer);
    return !!e && !e.revoked && (anyGlobMatches(e.read, doc) || anyGlobMatches(e.write, doc));
  }
}
