import type { Revocation } from '../tokens/revocation.js';

/** Revocations from trusted authorities kept: only those authorities can make more, so this is a backstop, not a defence. */
export const MAX_TRUSTED_REVOCATIONS = 10_000;
/**
 * Revocations this node cannot verify, kept to pass on (DESIGN.md §10): as
 * many as one `grants` message carries, so that whatever a peer pushes costs
 * every later session at most one more message.
 */
export const MAX_UNVERIFIED_REVOCATIONS = 256;

/**
 * The authority revocation tokens a node holds, in two pools with their own
 * caps: those that verify against a trusted authority (they bind this node),
 * never blocked or displaced by the others, and those it cannot verify,
 * which it only passes on. Nothing is ever pushed out: a revocation is
 * permanent, so a full pool refuses newcomers instead.
 *
 * Residual limitation: a peer can fill the unverifiable pool with made-up
 * revocations, after which this node no longer relays new revocations of
 * authorities it does not trust itself (its grants file still adds them).
 * Nodes that trust that authority still get them from any node that does.
 */
export class RevocationPool {
  readonly #trusted = new Map<string, Revocation>();
  readonly #unverified = new Set<string>();

  has(token: string): boolean {
    return this.#trusted.has(token) || this.#unverified.has(token);
  }

  /** Verified revocations (they bind this node). */
  trusted(): IterableIterator<Revocation> {
    return this.#trusted.values();
  }

  /** Every token: trusted ones first. */
  tokens(): string[] {
    return [...this.#trusted.keys(), ...this.#unverified];
  }

  /** Holds a verified revocation; false if already held, or the pool is full (`force` ignores the cap). */
  addTrusted(r: Revocation, force = false): boolean {
    if (this.has(r.token) || (!force && this.#trusted.size >= MAX_TRUSTED_REVOCATIONS)) return false;
    this.#trusted.set(r.token, r);
    return true;
  }

  /** Holds a revocation this node cannot verify, to pass on; false if already held, or the pool is full (`force` ignores the cap). */
  addUnverified(token: string, force = false): boolean {
    if (this.has(token) || (!force && this.#unverified.size >= MAX_UNVERIFIED_REVOCATIONS)) return false;
    this.#unverified.add(token);
    return true;
  }
}
