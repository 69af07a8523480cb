/**
 * Exponential backoff with full jitter: attempt n waits a random time in
 * [d/2, d] where d = min(cap, base * 2^n). `random` is injectable for tests.
 */
export function backoffDelay(attempt: number, baseMs: number, capMs: number, random: () => number = Math.random): number {
  const d = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.round(d / 2 + (random() * d) / 2);
}
