/**
 * Clock intervals per client, sorted and merged, for the questions the
 * signing path asks of thousands of structs at once (is this struct pending,
 * refused, brought by this update?) in O(log n) each rather than a scan.
 */
export class RangeIndex {
  readonly #byClient = new Map<number, [number, number][]>();

  /** From `[client, from, to)` ranges in any order, overlapping or not. */
  constructor(ranges: Iterable<readonly [number, number, number]> = []) {
    for (const [client, from, to] of ranges) {
      if (to > from) (this.#byClient.get(client) ?? this.#byClient.set(client, []).get(client)!).push([from, to]);
    }
    for (const [client, list] of this.#byClient) {
      list.sort((a, b) => a[0] - b[0]);
      const merged: [number, number][] = [];
      for (const [from, to] of list) {
        const last = merged[merged.length - 1];
        if (last && from <= last[1]) last[1] = Math.max(last[1], to);
        else merged.push([from, to]);
      }
      this.#byClient.set(client, merged);
    }
  }

  get size(): number {
    return this.#byClient.size;
  }

  /** Whether any interval of `client` intersects [from, to). */
  overlaps(client: number, from: number, to: number): boolean {
    const list = this.#byClient.get(client);
    if (!list) return false;
    const i = firstEndingAfter(list, from);
    return i < list.length && list[i]![0] < to;
  }

  /** The intervals of `client` that intersect [from, to), in clock order (unclipped). */
  within(client: number, from: number, to: number): readonly (readonly [number, number])[] {
    const list = this.#byClient.get(client);
    if (!list) return [];
    const out: [number, number][] = [];
    for (let i = firstEndingAfter(list, from); i < list.length && list[i]![0] < to; i++) out.push(list[i]!);
    return out;
  }
}

/** Index of the first interval whose end is past `clock` (list sorted, non-overlapping). */
export function firstEndingAfter(list: readonly (readonly [number, number])[], clock: number): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid]![1] > clock) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}
