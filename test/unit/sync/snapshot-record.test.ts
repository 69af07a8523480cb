/** Snapshot records: the state with the vector it covers and its hash; one stored before the hash still reads; a changed state does not. */
import { describe, expect, it } from 'vitest';
import { decodeSnapshot, encodeSnapshot } from '../../../src/sync/doc-records.js';
import { encodeEnvelopeValue } from '../../../src/store/records.js';
import { CorruptRecordError } from '../../../src/store/store.js';

const vector = { 'a:b': 3 };
const state = new Uint8Array([1, 1, 5, 0, 4, 1, 1, 116, 1, 120, 0]);

describe('snapshot records', () => {
  it('read back as written', () => {
    expect(decodeSnapshot(encodeSnapshot(vector, state), 'd')).toEqual({ vector, state });
  });

  it('one written before snapshots had a hash (the vector alone) still reads', () => {
    expect(decodeSnapshot(encodeEnvelopeValue(JSON.stringify(vector), state), 'd')).toEqual({ vector, state });
  });

  it('a state changed after it was written is a damaged record', () => {
    const bytes = encodeSnapshot(vector, state);
    bytes[bytes.length - 2] ^= 1;
    expect(() => decodeSnapshot(bytes, 'd')).toThrow(CorruptRecordError);
  });
});
