import { createHash, type KeyObject } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { PeersConfig, Cutoff } from '../config/peers.js';
import { importPublicJwk } from '../identity/keys.js';
import type { DocName, FeedKey, NodeId } from '../types.js';
import { Space, type Store, type StoreOp } from '../store/store.js';
import { peekGrant, verifyGrant, type Grant } from '../tokens/grant.js';
import { peekRevocation, verifyRevocation, type Revocation } from '../tokens/revocation.js';
import { GrantPool, type GrantChange } from './grant-pool.js';
import { RevocationPool, MAX_TRUSTED_REVOCATIONS } from './revocation-pool.js';

/** How an envelope of a (possibly revoked) origin is treated (DESIGN.md §2). */
export type Treatment = 'apply' | 'drop' | 'quarantine';

export function docHash(doc: string): string {
  return createHash('sha256').update(doc, 'utf8').digest('hex');
}

const sha256 = (token: string): string => createHash('sha256').update(token).digest('hex');
const grantKey = (sub: string, token: string): string => `${sub}\u0000${sha256(token).slice(0, 24)}`;
const revocationKey = (token: string): string => sha256(token).slice(0, 32);
/** Revocations from the node's own grants file are stored under this prefix as well: they are kept beyond the caps at every start. */
const LOCAL = 'local\u0000';

/**
 * What one source (a peer's session) may still make this node verify: a
 * token that claims a trusted authority costs a signature check, and one
 * that then fails is a forgery by someone. Once a source has passed on
 * `limit` of them, its tokens that would need a check are ignored;
 * `onExhausted` is told once.
 */
export class VerifyBudget {
  readonly #limit: number;
  readonly #onExhausted: () => void;
  #forged = 0;

  constructor(limit: number, onExhausted: () => void) {
    this.#limit = limit;
    this.#onExhausted = onExhausted;
  }

  get exhausted(): boolean {
    return this.#forged >= this.#limit;
  }

  forged(): void {
    if (++this.#forged === this.#limit) this.#onExhausted();
  }
}

/**
 * What this node trusts beyond its peers file: grants signed by the
 * authorities it lists (DESIGN.md §10) and revocations, from its peers file
 * and from those authorities. Grants and revocations are stored raw (a relay
 * passes them on whether or not it trusts their authority), in pools of
 * their own: those that verify against a trusted authority, never displaced
 * or blocked by the others, and those this node cannot verify, kept within
 * small caps (see GrantPool and RevocationPool). One claiming a trusted
 * authority that does not verify is a forgery and is not kept. Everything is
 * sorted again whenever the authorities change.
 */
export class Trust extends EventEmitter<{ revocations: []; grants: [subjects: ReadonlySet<NodeId>] }> {
  readonly #store: Store;
  readonly #peers: () => PeersConfig;
  readonly #log: Logger;
  readonly #now: () => number;
  #grants = new GrantPool();
  #revocations = new RevocationPool();
  /** Trusted authority revocations: by revoked node. */
  #authorityRevocations = new Map<NodeId, Cutoff[]>();
  /** The authorities' keys, imported once per peers file. */
  #authorityKeys: { readonly config: PeersConfig; readonly keys: ReadonlyMap<string, KeyObject> } | undefined;
  #fingerprint = '';
  /** Revocations stored with the grants file's mark (LOCAL), so a grants file read again is not written again. */
  readonly #local = new Set<string>();
  /** Changes happen one at a time (a refresh sorts everything again). */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(opts: { store: Store; peers: () => PeersConfig; log: Logger; now: () => number }) {
    super();
    this.#store = opts.store;
    this.#peers = opts.peers;
    this.#log = opts.log.child({ component: 'trust' });
    this.#now = opts.now;
  }

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Loads stored grants and revocations and sorts them against the
   * authorities in force. What does not fit in the caps (or is forged) is not
   * loaded, but stays stored: a genuine token held beyond a cap (its
   * authority untrusted at this start, trusted again later) is loaded again
   * at a start where it fits.
   */
  start(): Promise<void> {
    return this.#exclusive(async () => {
      [this.#grants, this.#revocations] = await this.#sortStored(new Map(), new Set());
      this.#deriveRevocations();
    });
  }

  /**
   * Sorts every stored grant and revocation into new pools against the
   * authorities in force. Those held before (`grants`: token → whether its
   * subject presented it; `revocations`) and those from the grants file stay
   * whatever the caps; the rest come in as the caps allow.
   */
  async #sortStored(grants: ReadonlyMap<string, boolean>, revocations: ReadonlySet<string>): Promise<[GrantPool, RevocationPool]> {
    const g = new GrantPool();
    const r = new RevocationPool();
    for await (const [key, value] of this.#store.entries(Space.revocation)) {
      const token = Buffer.from(value).toString('utf8');
      const local = key.startsWith(LOCAL);
      if (local) this.#local.add(token);
      await this.#holdRevocation(r, token, local || revocations.has(token));
    }
    for await (const [, value] of this.#store.entries(Space.grant)) {
      const token = Buffer.from(value).toString('utf8');
      const self = grants.get(token);
      await this.#holdGrant(g, token, self ? peekGrant(token)?.sub : undefined, self !== undefined);
    }
    return [g, r];
  }

  /**
   * The key of `iss` if the peers file in force now lists it as an
   * authority. Read live, not from the last sort: a removed authority stops
   * vouching (grantsFor, admission) at the next message, not only once
   * every held token has been sorted again, which takes as long as there
   * are tokens to verify.
   */
  #authorityKey(iss: string): KeyObject | undefined {
    const config = this.#peers();
    if (this.#authorityKeys?.config !== config) this.#authorityKeys = { config, keys: new Map(config.authorities.map((a) => [a.id as string, importPublicJwk(a.publicKey)])) };
    return this.#authorityKeys.keys.get(iss);
  }

  /** Whether the peers file in force lists `iss` as an authority. */
  isAuthority(iss: string): boolean {
    return this.#authorityKey(iss) !== undefined;
  }

  /** Sorts everything again against the authorities in force (after a peers-file change). */
  refresh(): Promise<void> {
    return this.#exclusive(async () => {
      // Sorted into new pools, in force once complete: sessions starting meanwhile present the old ones.
      // From the store, not only from memory: a genuine token a start left out for the caps (its authority
      // untrusted then) comes back when its authority is trusted again.
      const held = new Map<string, boolean>();
      for (const { token, self } of this.#grants.entries()) held.set(token, self);
      [this.#grants, this.#revocations] = await this.#sortStored(held, new Set(this.#revocations.tokens()));
      this.#deriveRevocations();
      this.#log.debug({ revoked: this.#authorityRevocations.size }, 'trust refreshed');
    });
  }

  /**
   * Holds one grant in the pool it belongs to; undefined if it is not shaped
   * like a grant or claims a trusted authority without verifying. `presenter`:
   * the peer that sent it, when known.
   */
  async #holdGrant(pool: GrantPool, token: string, presenter: string | undefined, force = false, budget?: VerifyBudget): Promise<({ sub: string; trusted: boolean } & GrantChange) | undefined> {
    const peek = peekGrant(token);
    if (!peek) return undefined;
    const sub = peek.sub;
    const self = presenter === sub;
    if (!this.#authorityKey(peek.iss)) return { sub, trusted: false, ...pool.addUnverified(sub, token, peek.exp, self, force) };
    if (pool.holds(sub, token)) return { sub, trusted: true, added: false, evicted: [] };
    if (budget?.exhausted) return undefined;
    const g = await this.#verifyGrant(token, sub as NodeId, false);
    if (!g) budget?.forged();
    return g ? { sub, trusted: true, ...pool.addTrusted(g, force) } : undefined;
  }

  /**
   * Holds one revocation in the pool it belongs to; false if it is already
   * held, not shaped like a revocation, claims a trusted authority without
   * verifying, or its pool is full. `force`: ignore the caps (the grants
   * file, or sorting again what is already held).
   */
  async #holdRevocation(pool: RevocationPool, token: string, force: boolean, budget?: VerifyBudget): Promise<'trusted' | 'unverified' | false> {
    if (pool.has(token)) return false;
    const peek = peekRevocation(token);
    if (!peek) return false;
    const key = this.#authorityKey(peek.iss);
    if (!key) return pool.addUnverified(token, force) && 'unverified';
    if (budget?.exhausted) return false;
    let r: Revocation;
    try {
      r = await verifyRevocation(token, { id: peek.iss as NodeId, key });
    } catch {
      budget?.forged();
      return false;
    }
    if (pool.addTrusted(r, force)) return 'trusted';
    this.#log.error({ max: MAX_TRUSTED_REVOCATIONS }, 'too many revocations from trusted authorities; a new one is ignored');
    return false;
  }

  /** The revocations in force, from the trusted pool; emits `revocations` when they changed. */
  #deriveRevocations(): void {
    const revocations = new Map<NodeId, Cutoff[]>();
    for (const r of this.#revocations.trusted()) (revocations.get(r.sub) ?? revocations.set(r.sub, []).get(r.sub)!).push(r.cutoff);
    this.#authorityRevocations = revocations;
    this.#updateFingerprint();
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
    const key = peek && this.#authorityKey(peek.iss);
    if (!key || peek.sub !== sub) return undefined;
    try {
      return await verifyGrant(token, { id: peek.iss as NodeId, key }, { sub, now: this.#now(), checkExpiry });
    } catch {
      return undefined;
    }
  }

  /**
   * Stores grants received from a peer or the grants file; true if any was
   * new. `presenter`: who sent them (the grants its subject presented itself
   * are preferred among those this node cannot verify). New trusted grants
   * are announced (`grants`, with their subjects) once stored: what their
   * subjects wrote may be accepted now. `budget`: what the source may still
   * make this node verify.
   */
  addGrants(tokens: readonly string[], opts: { presenter?: NodeId; budget?: VerifyBudget } = {}): Promise<boolean> {
    return this.#exclusive(async () => {
      const ops: StoreOp[] = [];
      const trusted = new Set<NodeId>();
      for (const token of tokens) {
        const c = await this.#holdGrant(this.#grants, token, opts.presenter, false, opts.budget);
        if (!c) continue;
        if (c.added) ops.push({ type: 'put', space: Space.grant, key: grantKey(c.sub, token), value: Buffer.from(token) });
        if (c.added && c.trusted) trusted.add(c.sub as NodeId);
        for (const t of c.evicted) ops.push({ type: 'del', space: Space.grant, key: grantKey(c.sub, t) });
      }
      if (ops.length) await this.#store.write(ops);
      if (trusted.size) this.emit('grants', trusted);
      return ops.some((op) => op.type === 'put');
    });
  }

  /**
   * Stores revocations (from the grants file, `local`, or a peer); true if any
   * new one binds this node. Those from the grants file are kept whatever the
   * cap on revocations this node cannot verify.
   */
  addRevocations(tokens: readonly string[], opts: { local?: boolean; budget?: VerifyBudget } = {}): Promise<boolean> {
    return this.#exclusive(async () => {
      const fresh: string[] = [];
      let binding = false;
      for (const token of tokens) {
        const kind = await this.#holdRevocation(this.#revocations, token, !!opts.local, opts.budget);
        if (!kind) continue;
        fresh.push(token);
        binding ||= kind === 'trusted';
      }
      const ops: StoreOp[] = fresh.map((token) => ({ type: 'put', space: Space.revocation, key: revocationKey(token), value: Buffer.from(token) }));
      // The grants file's are marked as such, held before or not, so that every start keeps them whatever the caps.
      const marked = opts.local ? tokens.filter((token) => !this.#local.has(token) && this.#revocations.has(token)) : [];
      for (const token of marked) ops.push({ type: 'put', space: Space.revocation, key: LOCAL + revocationKey(token), value: Buffer.from(token) });
      if (ops.length) await this.#store.write(ops);
      for (const token of marked) this.#local.add(token);
      if (!binding) return false;
      const before = this.#fingerprint;
      this.#deriveRevocations();
      return before !== this.#fingerprint;
    });
  }

  /**
   * Grants naming `sub` that it presented itself (its grants file, for this
   * node's own id) or that a trusted authority vouches for: what a node sends
   * with its own envelopes, so that made-up grants naming it, pushed to it by
   * anyone, never travel as if it presented them.
   */
  presentedGrantsFor(sub: NodeId): string[] {
    return this.#grants.presented(sub);
  }

  /** Every grant naming `sub` (what a relay passes on with its envelopes): trusted ones first, then those its subject presented. */
  rawGrantsFor(sub: NodeId): string[] {
    return this.#grants.tokens(sub);
  }

  /** Every revocation held (what this node passes on): those that bind it first. */
  rawRevocations(): string[] {
    return this.#revocations.tokens();
  }

  /** Trusted grants naming `origin`, expiry not checked (authorship outlives admission), from authorities the peers file lists now. */
  grantsFor(origin: NodeId): readonly Grant[] {
    return this.#grants.trusted(origin).filter((g) => this.#authorityKey(g.iss));
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
