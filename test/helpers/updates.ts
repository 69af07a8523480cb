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
  return update((vu) => vu(0, 1, client, 1, clock, len));
}
