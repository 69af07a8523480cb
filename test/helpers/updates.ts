/** Yjs updates written byte by byte, for shapes an app's Yjs would take long to make. */
import * as encoding from 'lib0/encoding';

function update(write: (vu: (...xs: number[]) => void, e: encoding.Encoder) => void): Uint8Array {
  const e = encoding.createEncoder();
  write((...xs) => xs.forEach((x) => encoding.writeVarUint(e, x)), e);
  return encoding.toUint8Array(e);
}

/** `client` nests `n` arrays in root array `a`, each in the one before, in about six bytes each. */
export function nestedArrays(n: number, client = 7): Uint8Array {
  return update((vu, e) => {
    vu(1, n, client, 0);
    for (let i = 0; i < n; i++) {
      encoding.writeUint8(e, 7);
      if (i === 0) vu(1), encoding.writeVarString(e, 'a');
      else vu(0, client, i - 1);
      vu(0);
    }
    vu(0);
  });
}

/** An update that only deletes `len` clocks of `client` from `clock`. */
export function deletion(client: number, clock: number, len = 1): Uint8Array {
  return deletions(client, [[clock, len]]);
}

/** An update that only deletes `ranges` ([clock, len], sorted and apart, as Yjs writes them) of `client`. */
export function deletions(client: number, ranges: readonly (readonly [number, number])[]): Uint8Array {
  return update((vu) => {
    vu(0, 1, client, ranges.length);
    for (const [clock, len] of ranges) vu(clock, len);
  });
}

/** `client`'s `n` GC structs of length 1 from clock 0, each its own struct (Yjs would join them: a writer need not). */
export function gcStructs(n: number, client: number): Uint8Array {
  return update((vu) => {
    vu(1, n, client, 0);
    for (let i = 0; i < n; i++) vu(0, 1);
    vu(0);
  });
}

/**
 * One update: client 5's item of `long` values (i % 100) in root array "a",
 * and client 9's `inside` values (-1 each), each put after another unit of
 * it (every ninth), with no right origin.
 */
export function valuesInside(long: number, inside: number): Uint8Array {
  return update((vu, e) => {
    vu(2, inside, 9, 0);
    for (let i = 0; i < inside; i++) {
      encoding.writeUint8(e, 8 | 0x80);
      vu(5, (i + 1) * Math.floor(long / (inside + 1)), 1);
      encoding.writeAny(e, -1);
    }
    vu(1, 5, 0);
    encoding.writeUint8(e, 8);
    vu(1);
    encoding.writeVarString(e, 'a');
    vu(long);
    for (let i = 0; i < long; i++) encoding.writeAny(e, i % 100);
    vu(0);
  });
}

/** Each `[client, count]`: `count` items of that client (its number, as Any) with no origin and no right origin in root array "a": all at one place. */
export function atStart(...clients: [client: number, count: number][]): Uint8Array {
  return update((vu, e) => {
    vu(clients.length);
    for (const [client, count] of clients) {
      vu(count, client, 0);
      for (let i = 0; i < count; i++) {
        encoding.writeUint8(e, 8);
        vu(1);
        encoding.writeVarString(e, 'a');
        vu(1);
        encoding.writeAny(e, client);
      }
    }
    vu(0);
  });
}

/**
 * `client`'s one-character strings at the clocks of one parity in [from, to)
 * of root text "t" (each after the clock before it), with Skips between:
 * half of a run of typing, as many client ranges as characters.
 */
export function everyOther(client: number, from: number, to: number, parity: 0 | 1): Uint8Array {
  const clocks = Array.from({ length: to - from }, (_, i) => from + i).filter((c) => c % 2 === parity);
  return update((vu, e) => {
    vu(1, 2 * clocks.length - 1, client, clocks[0]!);
    for (const [i, c] of clocks.entries()) {
      if (i > 0) vu(10, 1);
      if (c === 0) encoding.writeUint8(e, 4), vu(1), encoding.writeVarString(e, 't');
      else encoding.writeUint8(e, 4 | 0x80), vu(client, c - 1);
      encoding.writeVarString(e, 'a');
    }
    vu(0);
  });
}
