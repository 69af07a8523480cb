import { createHash, type KeyObject } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { PeersConfig, Cutoff } from '../config/peers.js';
import { importPublicJwk } from '../identity/keys.js';
import type { DocName, FeedKey, NodeId } from '../types.js';
import { Space, type Store } from '../store/store.js';
import { peekGrant, verifyGrant, type Grant } from '../tokens/grant.js';
import { peekRevocation, verifyRevocation } from '../tokens/revocation.js';

/** How an envelope of a (possibly revoked) origin is treated (DESIGN.md §2). */
export type Treatment = 'apply' | 'drop' | 'quarantine';

const MAX_GRANTS_PER_ORIGIN = 8;
const MAX_REVOCATIONS = 10_000;
/** Nodes whose grants are kept (a relay keeps grants of origins it may never trust): bounded against a flood of made-up subjects. */
const MAX_GRANT_SUBJECTS = 50_000;

export function docHash(doc: string): string {
  return createHash('sha256').update(doc, 'utf8').digest('hex');
}

/**
 * What this node trusts beyond its peers file: grants signed by the
 * authorities it lists (DESIGN.md §10) and revocations, from its peers file
 * and from those authorities. Grants and revocations are stored raw (a relay
 * passes them on whether or not it trusts their authority) and verified
 * against the authorities in force whenever those change.
 */
export class Trust extends EventEmitter<{ revocations: [] }> {
  readonly #store: Store;
  readonly #peers: () => PeersConfig;
  readonly #log: Logger;
  readonly #now: () => number;
  /** Raw grant tokens by subject (bounded). */
  readonly #rawGrants = new Map<string, Set<string>>();
  /** Raw authority revocation tokens. */
  readonly #rawRevocations = new Set<string>();
  /** Verified against trusted authorities (expiry not checked): by subject. */
  #grants = new Map<NodeId, Grant[]>();
  /** Trusted authority revocations: by revoked node. */
  #authorityRevocations = new Map<NodeId, Cutoff[]>();
  #authorityKeys = new Map<string, KeyObject>();
  #fingerprint = '';

  constructor(opts: { store: Store; peers: () => PeersConfig; log: Logger; now: () => number }) {
    super();
    this.#store = opts.store;
    this.#peers = opts.peers;
    this.#log = opts.log.child({ component: 'trust' });
    this.#now = opts.now;
  }

  /** Loads stored grants and revocations and verifies them. */
  async start(): Promise<void> {
    for await (const [key, value] of this.#store.entries(Space.grant)) this.#remember(this.#rawGrants, key.split('\u0000')[0]!, Buffer.from(value).toString('utf8'));
    for await (const [, value] of this.#store.entries(Space.revocation)) this.#rawRevocations.add(Buffer.from(value).toString('utf8'));
    await this.refresh();
  }

  #remember(map: Map<string, Set<string>>, sub: string, token: string): boolean {
    if (!map.has(sub) && map.size >= MAX_GRANT_SUBJECTS) return false;
    const set = map.get(sub) ?? map.set(sub, new Set()).get(sub)!;
    if (set.has(token)) return false;
    set.add(token);
    if (set.size > MAX_GRANTS_PER_ORIGIN) {
      const oldest = [...set].sort((a, b) => (peekGrant(a)?.exp ?? 0) - (peekGrant(b)?.exp ?? 0))[0]!;
      set.delete(oldest);
    }
    return true;
  }

  /** Re-verifies everything against the authorities in force (after a peers-file change). */
  async refresh(): Promise<void> {
    const authorities = this.#peers().authorities;
    this.#authorityKeys = new Map(authorities.map((a) => [a.id, importPublicJwk(a.publicKey)]));
    const grants = new Map<NodeId, Grant[]>();
    for (const [sub, tokens] of this.#rawGrants) {
      for (const token of tokens) {
        const g = await this.#verifyGrant(token, sub as NodeId, false);
        if (g) (grants.get(g.sub) ?? grants.set(g.sub, []).get(g.sub)!).push(g);
      }
    }
    const revocations = new Map<NodeId, Cutoff[]>();
    for (const token of this.#rawRevocations) await this.#takeRevocation(token, revocations);
    this.#grants = grants;
    this.#authorityRevocations = revocations;
    this.#log.debug({ grants: grants.size, revoked: revocations.size }, 'trust refreshed');
    this.#updateFingerprint();
  }

  /** Adds a revocation to `into` if a trusted authority signed it; one signed by anyone else is ignored, so no one can revoke by forging one. */
  async #takeRevocation(token: string, into: Map<NodeId, Cutoff[]>): Promise<boolean> {
    const peek = peekRevocation(token);
    const key = peek && this.#authorityKeys.get(peek.iss);
    if (!key) return false;
    try {
      const r = await verifyRevocation(token, { id: peek.iss as NodeId, key });
      (into.get(r.sub) ?? into.set(r.sub, []).get(r.sub)!).push(r.cutoff);
      return true;
    } catch {
      return false;
    }
  }

  /** Recomputes what identifies the revocations in force; emits `revocations` when it changed (not on the first computation). */
  #updateFingerprint(): void {
    const authority = [...this.#authorityRevocations].map(([id, cutoffs]) => [id, cutoffs.map((c) => JSON.stringify(c)).sort()]).sort();
    const fingerprint = JSON.stringify(authority) + JSON.stringify(this.#peers().peers.filter((p) => p.revoked).map((p) => [p.id, p.revoked]));
    if (fingerprint !== this.#fingerprint) {
      const first = this.#fingerprint === '';
      this.#fingerprint = fingerprint;
      if (!first) this.emit('revocations');
    }
  }

  async #verifyGrant(token: string, sub: NodeId, checkExpiry: boolean): Promise<Grant | undefined> {
    const peek = peekGrant(token);
    const key = peek && this.#authorityKeys.get(peek.iss);
    if (!key || peek.sub !== sub) return undefined;
    try {
      return await verifyGrant(token, { id: peek.iss as NodeId, key }, { sub, now: this.#now(), checkExpiry });
    } catch {
      return undefined;
    }
  }

  /** Stores grants received from a peer or the grants file; true if any was new. */
  async addGrants(tokens: readonly string[]): Promise<boolean> {
    const fresh: { sub: NodeId; token: string }[] = [];
    for (const token of tokens) {
      const peek = peekGrant(token);
      if (!peek || !/^[A-Za-z0-9_-]{43}$/.test(peek.sub)) continue;
      if (this.#remember(this.#rawGrants, peek.sub, token)) fresh.push({ sub: peek.sub as NodeId, token });
    }
    if (!fresh.length) return false;
    await this.#store.write(
      fresh.map(({ sub, token }) => ({ type: 'put' as const, space: Space.grant, key: `${sub}\u0000${createHash('sha256').update(token).digest('hex').slice(0, 24)}`, value: Buffer.from(token) })),
    );
    // Only the new ones are verified: everything is re-verified only when the authorities change.
    for (const { sub, token } of fresh) {
      const g = await this.#verifyGrant(token, sub, false);
      if (g) this.#grants.set(sub, [...(this.#grants.get(sub) ?? []), g]);
    }
    return true;
  }

  /** Stores revocations (from the grants file or a peer); true if any new one binds this node. */
  async addRevocations(tokens: readonly string[]): Promise<boolean> {
    const fresh: string[] = [];
    for (const token of tokens) {
      if (this.#rawRevocations.has(token) || this.#rawRevocations.size >= MAX_REVOCATIONS || !peekRevocation(token)) continue;
      this.#rawRevocations.add(token);
      fresh.push(token);
    }
    if (!fresh.length) return false;
    await this.#store.write(fresh.map((token) => ({ type: 'put' as const, space: Space.revocation, key: createHash('sha256').update(token).digest('hex').slice(0, 32), value: Buffer.from(token) })));
    // Only the new ones are verified.
    let trusted = false;
    for (const token of fresh) trusted = (await this.#takeRevocation(token, this.#authorityRevocations)) || trusted;
    if (!trusted) return false;
    const before = this.#fingerprint;
    this.#updateFingerprint();
    return before !== this.#fingerprint;
  }

  /** Raw grants naming `sub` (what a relay passes on with its envelopes). */
  rawGrantsFor(sub: NodeId): string[] {
    return [...(this.#rawGrants.get(sub) ?? [])];
  }

  rawRevocations(): string[] {
    return [...this.#rawRevocations];
  }

  /** Trusted grants naming `origin`, expiry not checked (authorship outlives admission). */
  grantsFor(origin: NodeId): readonly Grant[] {
    return this.#grants.get(origin) ?? [];
  }

  /** An unexpired grant from a trusted authority that admits `peer` with `key`, from the tokens it presented. */
  async admission(peer: NodeId, keyX: string, tokens: readonly string[]): Promise<Grant | undefined> {
    let best: Grant | undefined;
    for (const token of tokens) {
      const g = await this.#verifyGrant(token, peer, true);
      if (g && g.key.x === keyX && (!best || g.exp > best.exp)) best = g;
    }
    return best;
  }

  /** Identifies the revocations in force (changes whenever they do). */
  get fingerprint(): string {
    return this.#fingerprint;
  }

  /** Every node revoked on this node now. */
  revokedNodes(): Set<string> {
    return new Set([...this.#peers().peers.filter((p) => p.revoked).map((p) => p.id as string), ...this.#authorityRevocations.keys()]);
  }

  /** Whether `node` is revoked on this node (peers file or a trusted authority). */
  isRevoked(node: NodeId): boolean {
    return !!this.#peers().peers.find((p) => p.id === node)?.revoked || this.#authorityRevocations.has(node);
  }

  /** Every cutoff in force for a node. */
  #cutoffs(node: NodeId): Cutoff[] {
    const own = this.#peers().peers.find((p) => p.id === node)?.revoked?.cutoff;
    return [...(own ? [own] : []), ...(this.#authorityRevocations.get(node) ?? [])];
  }

  /**
   * How an envelope is treated (DESIGN.md §2): for a revoked origin and a
   * document named by its revocations, the effective cutoff per feed is the
   * lowest seq among them (a feed not listed has cutoff 0): up to it applied,
   * beyond it dropped; for a document no revocation names, quarantined.
   */
  treatment(origin: NodeId, doc: DocName, feed: FeedKey, seq: number): Treatment {
    const cutoffs = this.#cutoffs(origin);
    if (!cutoffs.length) return 'apply';
    const hash = docHash(doc);
    let limit: number | undefined;
    for (const c of cutoffs) {
      const named = c[hash] ?? c['*'];
      if (!named) continue;
      const n = named[feed] ?? 0;
      limit = limit === undefined ? n : Math.min(limit, n);
    }
    if (limit === undefined) return 'quarantine';
    return seq <= limit ? 'apply' : 'drop';
  }
}
