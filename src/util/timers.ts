/** Node clamps timer delays above 2^31-1 ms to 1 ms; this waits any length by re-arming. */
const MAX = 2 ** 31 - 1;

export function longTimeout(fn: () => void, ms: number): { cancel(): void } {
  let timer: NodeJS.Timeout;
  const arm = (left: number) => {
    timer = setTimeout(() => (left > MAX ? arm(left - MAX) : fn()), Math.min(Math.max(0, left), MAX));
    timer.unref?.();
  };
  arm(ms);
  return {
    // Node keeps the list of an unref'd timer cleared before its time until that time comes (one list
    // per distinct delay): ref'd again first, it is removed at once. Each connection's token-expiry timer
    // would otherwise stay in memory until its token expires.
    cancel: () => {
      timer.ref?.();
      clearTimeout(timer);
    },
  };
}
