/**
 * Remembers handshake token ids until they expire, so a token is accepted at
 * most once. Bounded: past `max` entries the expired ones are purged, and if
 * that is not enough the oldest go (the nonce binding still stops a replay).
 */
export class ReplayCache {
  readonly #seen = new Map<string, number>();
  readonly #max: number;
  readonly #now: () => number;

  constructor(opts: { max?: number; now: () => number }) {
    this.#max = opts.max ?? 100_000;
    this.#now = opts.now;
  }

  /** False if `jti` was seen and has not expired yet; otherwise remembers it. */
  remember(jti: string, expiresAt: number): boolean {
    const now = this.#now();
    const prev = this.#seen.get(jti);
    if (prev !== undefined && prev > now) return false;
    if (this.#seen.size >= this.#max) this.#purge(now);
    this.#seen.set(jti, expiresAt);
    return true;
  }

  #purge(now: number): void {
    for (const [k, exp] of this.#seen) if (exp <= now) this.#seen.delete(k);
    for (const k of this.#seen.keys()) {
      if (this.#seen.size < this.#max) break;
      this.#seen.delete(k);
    }
  }
}
