import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as Y from 'yjs';
import { decodeMessage, encodeMessage } from '../../src/protocol/messages.js';
import { PeerRefusal } from '../../src/protocol/close-codes.js';
import { parseHello } from '../../src/protocol/handshake.js';
import { FrameCipher } from '../../src/protocol/frames.js';
import { parseUpdate, UpdateDecodeError } from '../../src/yjs/parse.js';
import { ENVELOPE_HEADER, readEnvelopeClaims, EnvelopeError } from '../../src/sync/envelope.js';

/** Runs `fn`; any throw must be one of the expected error classes. */
function onlyThrows(fn: () => unknown, ...allowed: (abstract new (...a: never[]) => Error)[]): void {
  try {
    fn();
  } catch (err) {
    if (!allowed.some((c) => err instanceof c)) throw new Error(`unexpected ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`);
  }
}

/** A real update, then mutated: flips, truncations, insertions. */
function realUpdate(): Uint8Array {
  const d = new Y.Doc();
  d.getText('t').insert(0, 'hello world');
  d.getMap('m').set('k', { a: [1, 2, 'x'] });
  d.getArray('a').push([1, 'two', new Uint8Array([3])]);
  d.getText('t').delete(2, 3);
  return Y.encodeStateAsUpdate(d);
}

const mutated = (base: Uint8Array) =>
  fc.tuple(fc.nat(base.length), fc.integer({ min: 0, max: 255 }), fc.constantFrom('flip', 'cut', 'insert')).map(([i, b, how]) => {
    if (how === 'cut') return base.slice(0, i);
    if (how === 'insert') return Uint8Array.from([...base.slice(0, i), b, ...base.slice(i)]);
    const out = base.slice();
    if (out.length) out[i % out.length] ^= b || 1;
    return out;
  });

describe('fuzzing the codecs: random and mutated input only ever fails with the codec\'s own error', () => {
  it('session messages (every type byte, random bodies)', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 2048 }), (bytes) => onlyThrows(() => decodeMessage(bytes), PeerRefusal)), { numRuns: 3000 });
    const valid = encodeMessage({ type: 'envelopes', items: [{ token: 'a.b.c', update: new Uint8Array([0, 0]) }] });
    fc.assert(fc.property(mutated(valid), (bytes) => onlyThrows(() => decodeMessage(bytes), PeerRefusal)), { numRuns: 3000 });
    for (const type of [1, 2, 3, 5]) {
      fc.assert(fc.property(fc.json(), (j) => onlyThrows(() => decodeMessage(Uint8Array.from([type, ...Buffer.from(j)])), PeerRefusal)), { numRuns: 500 });
    }
  });

  it('a decoded message re-encodes to the same bytes', () => {
    const item = fc.record({ token: fc.string({ maxLength: 200 }), update: fc.uint8Array({ maxLength: 200 }) });
    fc.assert(
      fc.property(fc.array(item, { maxLength: 20 }), (items) => {
        const bytes = encodeMessage({ type: 'envelopes', items });
        expect(encodeMessage(decodeMessage(bytes))).toEqual(bytes);
      }),
    );
  });

  it('handshake hello', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 1500 }), (bytes) => onlyThrows(() => parseHello(bytes), PeerRefusal)), { numRuns: 2000 });
    fc.assert(fc.property(fc.json(), (j) => onlyThrows(() => parseHello(Buffer.from(j)), PeerRefusal)), { numRuns: 2000 });
  });

  it('encrypted frames: any tampering or garbage fails authentication', () => {
    const key = new Uint8Array(32).fill(7);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ minLength: 1, maxLength: 300 }), (plain, garbage) => {
        const sealed = new FrameCipher(key).seal(plain);
        const tampered = Buffer.from(sealed);
        tampered[garbage[0]! % tampered.length] ^= 1;
        expect(() => new FrameCipher(key).open(tampered)).toThrow(PeerRefusal);
        onlyThrows(() => new FrameCipher(key).open(garbage), PeerRefusal);
        expect(new FrameCipher(key).open(sealed)).toEqual(Buffer.from(plain));
      }),
      { numRuns: 1000 },
    );
  });

  it('encrypted frames: ciphers made ahead (prepare) change no byte, whenever they are made', () => {
    const key = new Uint8Array(32).fill(9);
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.uint8Array({ maxLength: 200 }), fc.constantFrom('none', 'seal', 'open', 'both')), { maxLength: 12 }), (steps) => {
        const plain = new FrameCipher(key);
        const early = new FrameCipher(key);
        const recv = new FrameCipher(key);
        for (const [bytes, ahead] of steps) {
          if (ahead === 'seal' || ahead === 'both') early.prepare('seal');
          if (ahead === 'open' || ahead === 'both') early.prepare('open');
          if (ahead !== 'none') recv.prepare('open');
          const frame = early.seal(bytes);
          expect(frame).toEqual(plain.seal(bytes));
          expect(recv.open(frame)).toEqual(Buffer.from(bytes));
        }
      }),
      { numRuns: 300 },
    );
  });

  it('Yjs updates: the parser accepts what Yjs writes and refuses the rest without crashing', () => {
    const base = realUpdate();
    expect(() => parseUpdate(base)).not.toThrow();
    fc.assert(fc.property(mutated(base), (bytes) => onlyThrows(() => parseUpdate(bytes), UpdateDecodeError)), { numRuns: 5000 });
    fc.assert(fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) => onlyThrows(() => parseUpdate(bytes), UpdateDecodeError)), { numRuns: 5000 });
    expect(() => parseUpdate(Y.encodeStateAsUpdateV2(new Y.Doc()))).toThrow(UpdateDecodeError);
  });

  it('the parser agrees with Yjs on struct ranges of random documents', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.constantFrom('text', 'map', 'array', 'del'), fc.string({ maxLength: 8 }), fc.nat(20)), { maxLength: 40 }), (ops) => {
        const d = new Y.Doc();
        for (const [op, s, n] of ops) {
          const t = d.getText('t');
          if (op === 'text') t.insert(Math.min(n, t.length), s);
          else if (op === 'map') d.getMap('m').set(s, n);
          else if (op === 'array') d.getArray('a').push([s, n]);
          else if (t.length) t.delete(n % t.length, 1);
        }
        const update = Y.encodeStateAsUpdate(d);
        const parsed = parseUpdate(update);
        const meta = Y.parseUpdateMeta(update);
        for (const [client, to] of meta.to) {
          const mine = parsed.structs.filter((s) => s.client === client);
          expect(Math.max(...mine.map((s) => s.clock + s.length))).toBe(to);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('envelope tokens', () => {
    fc.assert(fc.property(fc.string({ maxLength: 500 }), (t) => onlyThrows(() => readEnvelopeClaims(t), EnvelopeError)), { numRuns: 3000 });
    const header = ENVELOPE_HEADER;
    fc.assert(
      fc.property(fc.json(), (j) => onlyThrows(() => readEnvelopeClaims(`${header}.${Buffer.from(j).toString('base64url')}.AAAA`), EnvelopeError)),
      { numRuns: 3000 },
    );
  });
});
