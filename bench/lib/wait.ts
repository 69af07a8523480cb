/**
 * Polls `check` until it returns a value other than undefined, for at most
 * `timeoutMs`; errors from `check` count as "not yet".
 */
export async function until<T>(what: string, check: () => Promise<T | undefined> | T | undefined, opts: { timeoutMs?: number; intervalMs?: number } = {}): Promise<T> {
  const deadline = performance.now() + (opts.timeoutMs ?? 30_000);
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await sleep(opts.intervalMs ?? 20);
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Lets pending I/O callbacks run (sockets flush) without a timer's 1 ms floor. */
export const yieldIo = () => new Promise<void>((r) => setImmediate(r));
