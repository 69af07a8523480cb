import * as Y from 'yjs';

/**
 * Yjs keeps the values of an array item (ContentAny, ContentJSON) in one
 * array per item, and cuts an item by copying both halves into new arrays;
 * joining two items again copies both. An update that cuts one item of n
 * values at k places, in order, copies about k × n values: 5,000 values put
 * inside an item of 200,000, all in one 440 KB update, took 15 s to apply,
 * and 20,000 of them ran the process out of memory while Yjs joined the
 * pieces again at the end of the transaction. Any writer can send that, and
 * every node that applies it would stall or crash.
 *
 * `shareContentRuns` makes the pieces of a cut item share its array: a
 * piece is the array and a range of it, and cutting and joining adjacent
 * pieces of one array only move the range. A piece takes its values into an
 * array of its own when something reads or encodes it (as Yjs has them from
 * the start), so what is left of a long item once the rest is deleted does
 * not hold the rest for longer than until the next snapshot.
 * What Yjs reads and writes is unchanged: `arr`, `getLength`, `getContent`,
 * `write` give the same values, so documents and their encodings are the
 * same.
 */

type Value = unknown;

const BASE = Symbol('base');
const FROM = Symbol('from');
const TO = Symbol('to');
const VIEW = Symbol('view');

interface Run {
  [BASE]: Value[];
  [FROM]: number;
  [TO]: number;
  /** The whole of BASE when the piece holds all of it; null while it holds a part it shares. */
  [VIEW]: Value[] | null;
}

type Encoder = Y.UpdateEncoderV1 | Y.UpdateEncoderV2;
type Content = Y.ContentAny | Y.ContentJSON;

function runOf(content: Content): Run {
  const run = content as unknown as Run & { arr?: Value[] };
  if (run[BASE] === undefined) {
    // Made before the methods were replaced: `arr` is its own property.
    const arr = Object.getOwnPropertyDescriptor(run, 'arr')?.value as Value[];
    delete run.arr;
    setBase(run, arr);
  }
  return run;
}

function setBase(run: Run, arr: Value[]): void {
  run[BASE] = arr;
  run[FROM] = 0;
  run[TO] = arr.length;
  run[VIEW] = arr;
}

/** The piece's values as an array of its own: once read, a piece keeps its values alone, as in Yjs, and no longer holds the rest. */
function valuesOf(run: Run): Value[] {
  if (run[VIEW] === null) setBase(run, run[BASE].slice(run[FROM], run[TO]));
  return run[VIEW]!;
}

const classes = [Y.ContentAny, Y.ContentJSON] as const;
const METHODS = ['getLength', 'splice', 'mergeWith', 'write'] as const;
const own = classes.map((Class) => Object.fromEntries(METHODS.map((m) => [m, Class.prototype[m]])));

function install(Class: (typeof classes)[number], writeValue: (encoder: Encoder, value: Value) => void): void {
  const proto = Class.prototype as unknown as Record<string, unknown>;
  Object.defineProperty(proto, 'arr', {
    configurable: true,
    get(this: Content) {
      return valuesOf(runOf(this));
    },
    set(this: Run, arr: Value[]) {
      setBase(this, arr);
    },
  });
  proto.getLength = function (this: Content) {
    const run = runOf(this);
    return run[TO] - run[FROM];
  };
  proto.splice = function (this: Content, offset: number) {
    const run = runOf(this);
    const right = Object.create(proto) as Run;
    right[BASE] = run[BASE];
    right[FROM] = run[FROM] + offset;
    right[TO] = run[TO];
    right[VIEW] = null;
    run[TO] = run[FROM] + offset;
    run[VIEW] = null;
    return right;
  };
  proto.mergeWith = function (this: Content, other: Content) {
    const [run, right] = [runOf(this), runOf(other)];
    if (right[BASE] === run[BASE] && right[FROM] === run[TO]) {
      run[TO] = right[TO];
      run[VIEW] = run[FROM] === 0 && run[TO] === run[BASE].length ? run[BASE] : null;
    } else {
      setBase(run, valuesOf(run).concat(valuesOf(right)));
    }
    return true;
  };
  proto.write = function (this: Content, encoder: Encoder, offset: number) {
    const run = runOf(this);
    // Encoded (in a snapshot, say), a piece takes its values for itself, as when read.
    if (run[TO] - run[FROM] < run[BASE].length) valuesOf(run);
    const [base, from, to] = [run[BASE], run[FROM], run[TO]];
    encoder.writeLen(to - from - offset);
    for (let i = from + offset; i < to; i++) writeValue(encoder, base[i]);
  };
}

/** Installs the shared runs on ContentAny and ContentJSON (again: no harm). */
export function shareContentRuns(): void {
  install(Y.ContentAny, (encoder, value) => encoder.writeAny(value as never));
  install(Y.ContentJSON, (encoder, value) => encoder.writeString(value === undefined ? 'undefined' : JSON.stringify(value)));
}

/** Puts Yjs's own arrays back (for tests that compare the two; contents made meanwhile must not be used after). */
export function copyContentArrays(): void {
  classes.forEach((Class, i) => {
    delete (Class.prototype as unknown as Record<string, unknown>).arr;
    Object.assign(Class.prototype, own[i]);
  });
}
