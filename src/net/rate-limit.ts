/**
 * Attempts per key (a remote address) per rolling minute. Bounded in keys:
 * a flood of distinct addresses cannot grow it without limit.
 */
export class RateLimiter {
  readonly #perMinute: number;
  readonly #now: () => number;
  readonly #hits = new Map<string, number[]>();
  readonly #maxKeys: number;

  constructor(opts: { perMinute: number; now: () => number; maxKeys?: number }) {
    this.#perMinute = opts.perMinute;
    this.#now = opts.now;
    this.#maxKeys = opts.maxKeys ?? 10_000;
  }

  /** Records an attempt; false when the key is over its limit. */
  allow(key: string): boolean {
    const now = this.#now();
    const since = now - 60_000;
    const hits = (this.#hits.get(key) ?? []).filter((t) => t > since);
    if (hits.length >= this.#perMinute) {
      this.#hits.set(key, hits);
      return false;
    }
    hits.push(now);
    this.#hits.delete(key);
    this.#hits.set(key, hits);
    if (this.#hits.size > this.#maxKeys) this.#hits.delete(this.#hits.keys().next().value!);
    return true;
  }
}
