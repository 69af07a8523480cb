import { createHash } from 'node:crypto';
import type { Vector } from '../store/records.js';

export type { Vector };

/** A stable hash of a vector (sorted keys), for `announce`. */
export function vectorHash(v: Vector): string {
  const keys = Object.keys(v).sort();
  const h = createHash('sha256');
  for (const k of keys) h.update(`${k}=${v[k]};`);
  return h.digest('base64url').slice(0, 22);
}

/** Whether `a` holds everything `b` holds. */
export function covers(a: Vector, b: Vector): boolean {
  return Object.entries(b).every(([k, seq]) => (a[k] ?? 0) >= seq);
}

/** Envelopes `a` holds that `b` lacks, summed over feeds. */
export function lag(a: Vector, b: Vector): number {
  let n = 0;
  for (const [k, seq] of Object.entries(a)) n += Math.max(0, seq - (b[k] ?? 0));
  return n;
}
