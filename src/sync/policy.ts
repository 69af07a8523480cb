import type { KeyObject } from 'node:crypto';
import { anyGlobMatches } from '../config/glob.js';
import type { PeerEntry, PeersConfig } from '../config/peers.js';
import { importPublicJwk, type KeyPair } from '../identity/keys.js';
import type { Trust } from '../trust/trust.js';
import type { Grant } from '../tokens/grant.js';
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

  readonly #trust: Trust;
  readonly #sessionGrant: (peer: NodeId) => Grant | undefined;

  /**
   * `sessionGrant`: the grant a peer admitted by grant alone holds now (its
   * session's); it decides what that peer may read and exchange.
   */
  constructor(self: KeyPair, peers: () => PeersConfig, trust: Trust, sessionGrant: (peer: NodeId) => Grant | undefined) {
    this.#self = self;
    this.#peers = peers;
    this.#trust = trust;
    this.#sessionGrant = sessionGrant;
  }

  get trust(): Trust {
    return this.#trust;
  }

  #importKey(jwk: PublicJwk): KeyObject {
    let k = this.#keys.get(jwk.x);
    if (!k) {
      k = importPublicJwk(jwk);
      this.#keys.set(jwk.x, k);
    }
    return k;
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

  /**
   * The key that may sign envelopes for `origin`: this node's, its peers
   * entry's (revoked or not: cutoffs decide what is kept), or the `cnf` key of
   * a trusted grant naming it (expired or not: expiry ends admission, not
   * authorship). Undefined when this node does not know the origin.
   */
  authorKey(origin: NodeId): KeyObject | undefined {
    const jwk = this.authorJwk(origin);
    return jwk ? this.#importKey(jwk) : undefined;
  }

  authorJwk(origin: NodeId): PublicJwk | undefined {
    if (origin === this.#self.id) return this.#self.publicJwk;
    const e = this.entry(origin);
    if (e) return e.publicKey;
    return this.#trust.grantsFor(origin)[0]?.key;
  }

  /** A display name for an origin: its peers-file name, or undefined. */
  nameOf(origin: NodeId): string | undefined {
    return this.entry(origin)?.name;
  }

  /** Whether `origin` may author updates of `doc`: its peers entry wins; otherwise any trusted grant naming it. */
  mayWrite(origin: NodeId, doc: DocName): boolean {
    if (origin === this.#self.id) return true;
    const e = this.entry(origin);
    if (e) return anyGlobMatches(e.write, doc);
    return this.#trust.grantsFor(origin).some((g) => anyGlobMatches(g.write, doc));
  }

  #globs(peer: NodeId): { read: readonly string[]; write: readonly string[] } | undefined {
    if (this.#trust.isRevoked(peer)) return undefined;
    const e = this.entry(peer);
    if (e) return e.revoked ? undefined : e;
    // A grant vouches only while its authority is listed: from the peers file's change on, not once the session is closed.
    const g = this.#sessionGrant(peer);
    return g && this.#trust.isAuthority(g.iss) ? g : undefined;
  }

  mayRead(peer: NodeId, doc: DocName): boolean {
    const g = this.#globs(peer);
    return !!g && anyGlobMatches(g.read, doc);
  }

  mayExchange(peer: NodeId, doc: DocName): boolean {
    const g = this.#globs(peer);
    return !!g && (anyGlobMatches(g.read, doc) || anyGlobMatches(g.write, doc));
  }
}
