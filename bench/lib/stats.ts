/** The p-quantile (0..1) of samples, nearest-rank. */
export function quantile(samples: readonly number[], p: number): number {
  if (!samples.length) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[rank]!;
}

export const median = (samples: readonly number[]) => quantile(samples, 0.5);

/** Rounds to `digits` significant digits (for JSON and the table). */
export function sig(x: number, digits = 3): number {
  if (!Number.isFinite(x) || x === 0) return x;
  return Number(x.toPrecision(digits));
}

/** A number for the table: thousands separated, sensible precision. */
export function fmt(x: number | undefined, unit = ''): string {
  if (x === undefined || Number.isNaN(x)) return '–';
  const abs = Math.abs(x);
  const text = abs >= 1000 ? Math.round(x).toLocaleString('en-US') : abs >= 100 ? x.toFixed(0) : abs >= 10 ? x.toFixed(1) : abs >= 1 ? x.toFixed(2) : x.toFixed(3);
  return unit ? `${text} ${unit}` : text;
}

export const ratio = (a: number, b: number) => (b > 0 ? a / b : NaN);

export const mib = (bytes: number | undefined) => (bytes === undefined ? NaN : bytes / 1024 / 1024);
