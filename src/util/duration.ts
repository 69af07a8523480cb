/** Durations are written as strings in config and flags: "500ms", "30s", "5m", "1h", "30d". */
const UNITS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const PATTERN = /^(\d+)(ms|s|m|h|d)$/;

/** Milliseconds for a duration string, or undefined when it is not one. */
export function parseDuration(text: string): number | undefined {
  const m = PATTERN.exec(text);
  if (!m) return undefined;
  const ms = Number(m[1]) * UNITS[m[2] as keyof typeof UNITS];
  return Number.isSafeInteger(ms) ? ms : undefined;
}

export const DURATION_HINT = 'a duration such as "500ms", "30s", "5m", "1h" or "30d"';
