/**
 * Audit of the Yjs update parser against Yjs itself: random, mostly
 * well-formed updates (every content type, bad payloads, huge varuints and
 * counts, ids and clocks near 2^53, delete sets out of order, lone
 * surrogates) and byte mutations of them, from a seeded generator. Whatever
 * the parser accepts, Yjs must decode, diff, merge, apply (to an empty
 * document and to one with content), encode again and render as JSON, and a
 * later update must still apply: what the parser lets through is signed and
 * stored, and a document Yjs then fails on fails every later read and write.
 * The worst of them then go through a daemon: from an app (POST and the
 * y-websocket route) and from a peer.
 */
import { describe, expect, it, onTestFinished } from 'vitest';
import * as encoding from 'lib0/encoding';
import WebSocket from 'ws';
import * as Y from 'yjs';
import { parseUpdate, UpdateDecodeError } from '../../src/yjs/parse.js';
import { docToJson, MAX_RENDER_DEPTH } from '../../src/yjs/to-json.js';
import type { DocName } from '../../src/types.js';
import { testNode, type TestNode } from '../helpers/cluster.js';
import { appDoc, getDoc, postUpdate } from '../helpers/docs.js';
import { syncMessage } from '../helpers/api.js';
import { mallory } from '../helpers/mallory.js';
import { envelope, newFeed } from '../helpers/raw-peer.js';
import { nestedArrays } from '../helpers/updates.js';
import { rng } from '../helpers/rng.js';

type Rng = ReturnType<typeof rng>;

const HUGE = [2 ** 53 - 1, 2 ** 53, 2 ** 53 + 2, 2 ** 32, 2 ** 31, 2 ** 56, 2 ** 63, 0xffffffff];
const num = (r: Rng, small = 20) => (r.chance(0.6) ? r.int(small) : r.chance(0.5) ? r.int(1000) : r.pick(HUGE) - r.int(3));
const vu = (e: encoding.Encoder, ...ns: number[]) => ns.forEach((n) => encoding.writeVarUint(e, n));

const STRINGS = ['', 'a', 't', 'm', 'x', '__proto__', 'constructor', 'toString', 'undefined', '\ud800', '\udc00x', '😀', 'a\u0000b', '{"a":1}'];
const JSONS = ['1', '"x"', 'null', 'true', '{"a":[1,2]}', '[]', 'undefined', '', '{', '1e999', '"\\ud800"', '{"__proto__":{"x":1}}', '{"toString":1}', '[{"valueOf":2}]', '-0', 'NaN'];

/** A string as bytes: mostly valid UTF-8, sometimes a CESU-8 lone surrogate, an overlong or cut sequence, or a bare length. */
function writeStr(r: Rng, e: encoding.Encoder, s = r.pick(STRINGS)): void {
  const k = r.int(12);
  if (k === 0) encoding.writeVarUint8Array(e, Uint8Array.of(0xed, 0xa0, 0x80));
  else if (k === 1) encoding.writeVarUint8Array(e, Uint8Array.of(0xc0, 0xaf));
  else if (k === 2) encoding.writeVarUint8Array(e, Uint8Array.of(0xe2, 0x82));
  else if (k === 3) vu(e, num(r, 100));
  else encoding.writeVarString(e, s);
}

const jsonText = (r: Rng) => (r.chance(0.8) ? r.pick(JSONS) : '['.repeat(r.int(150)) + ']'.repeat(r.int(150)));

function writeAny(r: Rng, e: encoding.Encoder, depth: number): void {
  const tag = depth > 3 ? r.pick([127, 126, 125, 119]) : r.pick([127, 126, 125, 124, 123, 122, 121, 120, 119, 118, 117, 116, 115, 0]);
  encoding.writeUint8(e, tag);
  if (tag === 125) encoding.writeVarInt(e, r.chance(0.5) ? r.int(100) - 50 : r.pick(HUGE));
  else if (tag === 124) encoding.writeFloat32(e, r.next());
  else if (tag === 123) encoding.writeFloat64(e, r.pick([NaN, Infinity, -0, 1e308]));
  else if (tag === 122) encoding.writeBigInt64(e, 5n);
  else if (tag === 119) writeStr(r, e);
  else if (tag === 116) encoding.writeVarUint8Array(e, Uint8Array.of(1, 2));
  else if (tag === 118 || tag === 117) {
    const n = r.chance(0.1) ? num(r) : r.int(4);
    vu(e, n);
    for (let i = 0; i < Math.min(n, 4); i++) {
      if (tag === 118) writeStr(r, e, r.pick(['a', 'guid', '__proto__', 'toString', 'valueOf', '']));
      writeAny(r, e, depth + 1);
    }
  }
}

/** Content of `kind`, often valid, sometimes not; its length in clock units. */
function writeContent(r: Rng, e: encoding.Encoder, kind: number): number {
  const count = () => (r.chance(0.8) ? 1 + r.int(3) : num(r));
  switch (kind) {
    case 1: {
      const n = count();
      vu(e, n);
      return n;
    }
    case 2:
    case 8: {
      const n = count();
      vu(e, n);
      for (let i = 0; i < Math.min(n, 4); i++) kind === 2 ? writeStr(r, e, jsonText(r)) : writeAny(r, e, 0);
      return n;
    }
    case 3:
      if (r.chance(0.8)) encoding.writeVarUint8Array(e, new Uint8Array(r.int(5)));
      else vu(e, num(r, 100));
      return 1;
    case 4: {
      const s = r.pick(STRINGS);
      writeStr(r, e, s);
      return s.length;
    }
    case 5:
      writeStr(r, e, jsonText(r));
      return 1;
    case 6:
      writeStr(r, e);
      writeStr(r, e, jsonText(r));
      return 1;
    case 7: {
      const ref = r.chance(0.85) ? r.int(7) : num(r);
      vu(e, ref);
      if (ref === 3 || ref === 5) writeStr(r, e);
      return 1;
    }
    case 9:
      writeStr(r, e);
      if (r.chance(0.6)) {
        encoding.writeUint8(e, 118);
        const n = r.int(3);
        vu(e, n);
        for (let i = 0; i < n; i++) {
          writeStr(r, e, r.pick(['guid', 'gc', 'meta', 'autoLoad', 'shouldLoad', '__proto__']));
          writeAny(r, e, 3);
        }
      } else writeAny(r, e, 0);
      return 1;
    default:
      return 1;
  }
}

const CLIENTS = [1, 2, 3, 777, 2 ** 53 - 1, 2 ** 32 + 1, 0];

/** One random, mostly well-formed V1 update; `ids` are ids the base document holds. */
function randomUpdate(r: Rng, ids: readonly (readonly [number, number])[]): Uint8Array {
  const e = encoding.createEncoder();
  const id = (client: number, clock: number) => {
    const k = r.int(10);
    if (k < 4) vu(e, ...r.pick(ids));
    else if (k < 6 && clock > 0) vu(e, client, r.int(clock));
    else if (k < 7) vu(e, client, clock + r.int(3));
    else vu(e, num(r), num(r));
  };
  const nClients = r.chance(0.05) ? num(r) : r.int(4);
  vu(e, nClients);
  for (let i = 0; i < Math.min(nClients, 4); i++) {
    const nStructs = r.chance(0.05) ? num(r) : 1 + r.int(4);
    const client = r.chance(0.8) ? r.pick(CLIENTS) : num(r);
    let clock = r.chance(0.6) ? r.int(30) : num(r);
    vu(e, nStructs, client, clock);
    for (let j = 0; j < Math.min(nStructs, 5); j++) {
      const kind = r.chance(0.92) ? r.int(11) : r.int(32);
      if (kind === 0 || kind === 10) {
        encoding.writeUint8(e, kind | (r.chance(0.1) ? 0xe0 : 0));
        const len = r.chance(0.85) ? 1 + r.int(5) : num(r);
        vu(e, len);
        clock += len;
        continue;
      }
      const [hasO, hasR, hasSub] = [r.chance(0.5), r.chance(0.3), r.chance(0.3)];
      encoding.writeUint8(e, kind | (hasO ? 0x80 : 0) | (hasR ? 0x40 : 0) | (hasSub ? 0x20 : 0));
      if (hasO) id(client, clock);
      if (hasR) id(client, clock);
      if (!hasO && !hasR) {
        const root = r.chance(0.75);
        vu(e, root ? 1 : r.chance(0.9) ? 0 : num(r));
        if (root) writeStr(r, e, r.pick(['t', 'm', 'a', 'x', '__proto__', '']));
        else id(client, clock);
        if (hasSub) writeStr(r, e, r.pick(['k', 'k2', '__proto__', '']));
      }
      clock += writeContent(r, e, kind);
    }
  }
  const nDs = r.chance(0.05) ? num(r) : r.int(3);
  vu(e, nDs);
  for (let i = 0; i < Math.min(nDs, 3); i++) {
    vu(e, r.chance(0.7) ? r.pick(CLIENTS) : num(r));
    const n = r.chance(0.05) ? num(r) : r.int(4);
    vu(e, n);
    for (let j = 0; j < Math.min(n, 4); j++) vu(e, r.chance(0.7) ? r.int(40) : num(r), r.chance(0.7) ? 1 + r.int(10) : num(r));
  }
  if (r.chance(0.03)) encoding.writeUint8(e, r.int(256));
  return encoding.toUint8Array(e);
}

/** Flips, cuts, inserted and removed bytes, and inserted 8-byte varuints. */
function mutate(r: Rng, base: Uint8Array): Uint8Array {
  let out = Uint8Array.from(base);
  for (let k = 1 + r.int(3); k > 0; k--) {
    const how = r.int(5);
    const i = r.int(out.length + 1);
    if (how === 0) out = out.slice(0, i);
    else if (how === 1) out = Uint8Array.from([...out.subarray(0, i), r.int(256), ...out.subarray(i)]);
    else if (how === 2 && out.length) out = Uint8Array.from([...out.subarray(0, i), ...out.subarray(i + 1)]);
    else if (how === 3) out = Uint8Array.from([...out.subarray(0, i), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f, ...out.subarray(i)]);
    else if (out.length) out[i % out.length]! ^= 1 << r.int(8);
  }
  return out;
}

/** A document with text, a map (a nested array in it), an array, XML and deletions, from two clients. */
function baseUpdate(): Uint8Array {
  const d = new Y.Doc({ gc: true });
  d.clientID = 1;
  d.getText('t').insert(0, 'hello world');
  d.getMap('m').set('k', { a: [1, 2] });
  d.getMap('m').set('k2', new Y.Array());
  d.getArray('a').push([1, 'two', new Uint8Array([3])]);
  d.getXmlFragment('x').insert(0, [new Y.XmlElement('p'), new Y.XmlText('xml')]);
  d.getText('t').delete(2, 3);
  const e = new Y.Doc({ gc: true });
  e.clientID = 2;
  Y.applyUpdate(e, Y.encodeStateAsUpdate(d));
  e.getText('t').insert(1, 'ZZZ');
  e.getArray('a').delete(0, 1);
  Y.applyUpdate(d, Y.encodeStateAsUpdate(e));
  return Y.encodeStateAsUpdate(d);
}

/** Every id the document holds, one per clock unit. */
function idsOf(update: Uint8Array): [number, number][] {
  const d = new Y.Doc();
  Y.applyUpdate(d, update);
  const out: [number, number][] = [];
  for (const [client, structs] of d.store.clients) for (const s of structs) for (let c = s.id.clock; c < s.id.clock + s.length; c++) out.push([client, c]);
  return out;
}

// ------------------------------------------------------------------ checks

const BASE = baseUpdate();
const BASE_SV = (() => {
  const d = new Y.Doc();
  Y.applyUpdate(d, BASE);
  return Y.encodeStateVector(d);
})();
/** An honest edit by a third client, applied after the update under test. */
const LATER = (() => {
  const d = new Y.Doc();
  d.clientID = 99;
  d.getMap('later').set('ok', true);
  return Y.encodeStateAsUpdate(d);
})();

/** What goes wrong in Yjs (or in the JSON view) with an update; undefined if nothing. */
function yjsTrouble(u: Uint8Array): string | undefined {
  const step = (what: string, fn: () => unknown): string | undefined => {
    try {
      fn();
      return undefined;
    } catch (err) {
      return `${what}: ${(err as Error).message}`;
    }
  };
  const first = step('decodeUpdate', () => Y.decodeUpdate(u)) ?? step('diffUpdate', () => Y.diffUpdate(u, BASE_SV)) ?? step('mergeUpdates', () => Y.mergeUpdates([BASE, u]));
  if (first) return first;
  for (const base of [undefined, BASE]) {
    const d = new Y.Doc({ gc: true });
    const trouble =
      step('applyUpdate', () => {
        if (base) Y.applyUpdate(d, base);
        Y.applyUpdate(d, u);
      }) ??
      step('docToJson', () => JSON.stringify(docToJson(d))) ??
      step('encodeStateAsUpdate', () => Y.encodeStateAsUpdate(d)) ??
      step('a later update', () => Y.applyUpdate(d, LATER)) ??
      step('docToJson after it', () => JSON.stringify(docToJson(d)));
    if (trouble) return `${base ? 'on content' : 'on an empty document'}, ${trouble}`;
  }
  return undefined;
}

/** The parser's verdict: true if it accepts, false if it refuses with its own error; any other throw fails the test. */
function accepts(u: Uint8Array): boolean {
  try {
    parseUpdate(u);
    return true;
  } catch (err) {
    if (err instanceof UpdateDecodeError) return false;
    throw new Error(`parseUpdate threw ${(err as Error)?.constructor?.name}: ${(err as Error)?.message} on ${Buffer.from(u).toString('hex')}`);
  }
}

describe('the parser against Yjs, on seeded random and mutated updates', () => {
  it('throws nothing but UpdateDecodeError, and whatever it accepts Yjs handles throughout', () => {
    const r = rng(20240611);
    const ids = idsOf(BASE);
    let accepted = 0;
    const troubles: string[] = [];
    for (let i = 0; i < 4000; i++) {
      let u = randomUpdate(r, ids);
      if (r.chance(0.3)) u = mutate(r, u);
      if (!accepts(u)) continue;
      accepted++;
      // And what the node derives from it (what is new to it; its own state) parses again.
      const trouble = yjsTrouble(u) ?? (accepts(Y.diffUpdate(u, BASE_SV)) ? undefined : 'the parser refuses Y.diffUpdate of it');
      if (trouble) troubles.push(`${trouble} (${Buffer.from(u).toString('hex')})`);
    }
    expect(troubles.slice(0, 5)).toEqual([]);
    // The generator must reach past the parser often enough for this to mean something.
    expect(accepted).toBeGreaterThan(400);
  });
});

// ------------------------------------------------------------------ the cases it found

const update = (build: (e: encoding.Encoder) => void) => {
  const e = encoding.createEncoder();
  build(e);
  return encoding.toUint8Array(e);
};
/** Client 5 inserts "ab" into root text "t", with `info` as the first struct's info byte before it (a Skip of 3). */
const skipWithInfo = (info: number) =>
  update((e) => {
    vu(e, 1, 2, 5, 0);
    encoding.writeUint8(e, info);
    vu(e, 3);
    encoding.writeUint8(e, 4);
    vu(e, 1);
    encoding.writeVarString(e, 't');
    encoding.writeVarString(e, 'ab');
    vu(e, 0);
  });
/** No structs; client `client`'s delete ranges as given. */
const deletions = (...clients: [number, ...[number, number][]][]) =>
  update((e) => {
    vu(e, 0, clients.length);
    for (const [client, ...ranges] of clients) {
      vu(e, client, ranges.length);
      for (const [clock, len] of ranges) vu(e, clock, len);
    }
  });
/** Client 5 inserts "ab" with a right origin `id`. */
const withRightOrigin = (id: [number, number]) =>
  update((e) => {
    vu(e, 1, 1, 5, 0);
    encoding.writeUint8(e, 0x44);
    vu(e, ...id);
    encoding.writeVarString(e, 'ab');
    vu(e, 0);
  });
/** Client 5 sets key "k" of map "m" to a sub-document with the options `opts`. */
const subDocument = (opts: Record<string, unknown>) =>
  update((e) => {
    vu(e, 1, 1, 5, 0);
    encoding.writeUint8(e, 9 | 0x20);
    vu(e, 1);
    encoding.writeVarString(e, 'm');
    encoding.writeVarString(e, 'k');
    encoding.writeVarString(e, 'guid-1');
    encoding.writeAny(e, opts as never);
    vu(e, 0);
  });

describe('what Yjs cannot handle is refused', () => {
  it('a Skip with flag bits (diffUpdate and mergeUpdates throw on it; the bare Skip passes)', () => {
    expect(() => Y.diffUpdate(skipWithInfo(0x4a), BASE_SV)).toThrow();
    expect(() => parseUpdate(skipWithInfo(0x4a))).toThrow(UpdateDecodeError);
    expect(yjsTrouble(skipWithInfo(10))).toBeUndefined();
    expect(accepts(skipWithInfo(10))).toBe(true);
  });

  it('delete ranges past 2^53: kept pending, they break every later update and read of the document', () => {
    const u = deletions([777, [927, 8], [1000, 2 ** 56], [2 ** 56 + 10, 1]]);
    expect(yjsTrouble(u)).toMatch(/Unexpected case|Integer out of Range/);
    expect(() => parseUpdate(u)).toThrow(/out of range/);
    expect(() => parseUpdate(deletions([5, [2 ** 53 - 1, 1]]))).toThrow(/out of range/);
    expect(() => parseUpdate(deletions([2 ** 60, [1, 1]]))).toThrow(/out of range/);
    expect(accepts(deletions([5, [2 ** 53 - 2, 1]]))).toBe(true);
  });

  it('delete ranges out of order, overlapping, or a client twice: kept pending, Yjs re-encodes them as other deletions', () => {
    const pendingAfter = (u: Uint8Array) => {
      const d = new Y.Doc();
      Y.applyUpdate(d, u);
      return [...Y.decodeUpdateV2(d.store.pendingDs!).ds.clients.get(1)!].map((i) => [i.clock, i.len]);
    };
    expect(pendingAfter(deletions([1, [28, 18], [12, 9]]))).not.toEqual([
      [12, 9],
      [28, 18],
    ]);
    for (const u of [deletions([1, [28, 18], [12, 9]]), deletions([1, [3, 6], [5, 7]]), deletions([1, [3, 2]], [1, [0, 1]])]) expect(() => parseUpdate(u)).toThrow(UpdateDecodeError);
    // As Yjs writes them: sorted, apart or touching.
    expect(pendingAfter(deletions([1, [12, 9], [21, 1], [28, 18]]))).toEqual([
      [12, 9],
      [21, 1],
      [28, 18],
    ]);
    expect(accepts(deletions([1, [12, 9], [21, 1], [28, 18]]))).toBe(true);
  });

  it('ids past 2^53 (Yjs cannot encode what waits on them exactly)', () => {
    expect(() => parseUpdate(withRightOrigin([19, 2 ** 56]))).toThrow(/id out of range/);
    expect(() => parseUpdate(withRightOrigin([2 ** 53, 0]))).toThrow(/id out of range/);
    expect(accepts(withRightOrigin([2 ** 53 - 1, 2 ** 53 - 1]))).toBe(true);
  });

  it('a sub-document whose options set its guid (not a string: Yjs cannot encode it; undefined: every node makes up its own)', () => {
    const digests = () => {
      const u = subDocument({ guid: undefined });
      return [1, 2].map(() => {
        const d = new Y.Doc();
        Y.applyUpdate(d, u);
        return Buffer.from(Y.encodeStateAsUpdate(d)).toString('hex');
      });
    };
    const [one, two] = digests();
    expect(one).not.toBe(two);
    expect(yjsTrouble(subDocument({ guid: null }))).toMatch(/length/);
    for (const opts of [{ guid: undefined }, { guid: null }, { guid: 'g' }]) expect(() => parseUpdate(subDocument(opts))).toThrow(/guid/);
    expect(accepts(subDocument({ gc: false, meta: { a: 1 } }))).toBe(true);
  });
});

// ------------------------------------------------------------------ the JSON view

/** Client 7 nests `n` arrays in root array "a", each inside the one before. */
/** Client 50 puts one struct under `parent` (an item id: the nested type it is the content of). */
function childOf(parent: [number, number], kind: number, content: (e: encoding.Encoder) => void, key?: string): Uint8Array {
  return update((e) => {
    vu(e, 1, 1, 50, 0);
    encoding.writeUint8(e, kind | (key ? 0x20 : 0));
    vu(e, 0, ...parent);
    if (key) encoding.writeVarString(e, key);
    content(e);
    vu(e, 0);
  });
}
const anyValue = (v: unknown) => (e: encoding.Encoder) => {
  vu(e, 1);
  encoding.writeAny(e, v as never);
};

/** Client 1: XML fragment "x" holding <p a="b"> (id 1:0) and XML text "xml" (id 1:1). */
function xmlBase(): Y.Doc {
  const d = new Y.Doc();
  d.clientID = 1;
  const p = new Y.XmlElement('p');
  d.getXmlFragment('x').insert(0, [p, new Y.XmlText('xml')]);
  p.setAttribute('a', 'b');
  return d;
}

describe('the JSON view of a document renders whatever content it holds', () => {
  it('XML with a child or attribute that Yjs cannot turn into a string', () => {
    const cases: [Uint8Array, string][] = [
      [childOf([1, 0], 8, anyValue(null)), '<p a="b">null</p>xml'],
      [childOf([1, 0], 8, anyValue(undefined)), '<p a="b">undefined</p>xml'],
      [childOf([1, 0], 8, anyValue({ toString: 1 })), '<p a="b">[object Object]</p>xml'],
      [childOf([1, 0], 8, anyValue({ toString: 1 }), 'z'), '<p a="b" z="[object Object]"></p>xml'],
      [childOf([1, 0], 2, (e) => (vu(e, 1), encoding.writeVarString(e, 'null'))), '<p a="b">null</p>xml'],
      [childOf([1, 1], 5, (e) => encoding.writeVarString(e, '{"valueOf":1,"toString":2}')), '<p a="b"></p>xml[object Object]'],
    ];
    for (const [u, xml] of cases) {
      const d = xmlBase();
      expect(accepts(u)).toBe(true);
      Y.applyUpdate(d, u);
      expect(() => d.getXmlFragment('x').toString()).toThrow();
      expect(docToJson(d)).toEqual({ x: xml });
    }
  });

  it('renders as Yjs does wherever Yjs can, also when another root forces the tolerant rendering', () => {
    const r = rng(7);
    const value = () => r.pick<unknown>([1, 'a', null, true, { a: 1 }, [1, [2, null]], new Uint8Array([1, 2]), 1.5, '', { b: { c: 'x' } }]);
    for (let n = 0; n < 40; n++) {
      const d = new Y.Doc();
      const all: Y.XmlFragment[] = [d.getXmlFragment('x')];
      for (let i = 0; i < 25; i++) {
        const p = r.pick(all);
        const k = r.int(3);
        if (k === 0) {
          const el = new Y.XmlElement(r.pick(['p', 'Div']));
          p.insert(r.int(p.length + 1), [el]);
          all.push(el);
          if (r.chance(0.5)) el.setAttribute(r.pick(['a', 'class']), r.pick(['x', 'y z']));
        } else if (k === 1) {
          const t = new Y.XmlText(r.pick(['hi', '<&>']));
          p.insert(r.int(p.length + 1), [t]);
          if (r.chance(0.5)) t.format(0, 1, { bold: true, i: { x: 1 } });
          if (r.chance(0.3)) t.insertEmbed(1, { img: 'a' });
        } else if (p.length) p.delete(r.int(p.length), 1);
      }
      const m = d.getMap('m');
      m.set('v', value());
      const inner = new Y.Map();
      m.set('nested', inner);
      inner.set('q', value());
      const xe = new Y.XmlElement('inmap');
      m.set('xml', xe);
      xe.insert(0, [new Y.XmlText('t')]);
      d.getArray('a').push([value(), new Y.Text('txt'), new Y.XmlText('x')]);
      const want = docToJson(d);
      // A chain of nested types deeper than the bound in another root: every root is rendered by the tolerant path.
      let p: Y.Array<unknown> = d.getArray('zz');
      for (let i = 0; i <= MAX_RENDER_DEPTH; i++) {
        const next = new Y.Array();
        p.push([next]);
        p = next;
      }
      const got = docToJson(d);
      delete got.zz;
      expect(got).toEqual(want);
    }
  });

  it('types nested far deeper than Yjs can render: the view within the bound, not a failure', () => {
    const d = new Y.Doc();
    Y.applyUpdate(d, nestedArrays(20_000));
    expect(() => JSON.stringify(d.getArray('a').toJSON())).toThrow(RangeError);
    let json = docToJson(d).a;
    let depth = 0;
    while (Array.isArray(json) && json.length) [json, depth] = [json[0], depth + 1];
    expect(depth).toBe(MAX_RENDER_DEPTH);
  });
});

// ------------------------------------------------------------------ end to end

/** Updates each refused above, with what they would have done to a node. */
const WORST: [string, Uint8Array][] = [
  ['a Skip with flag bits (a 500 on POST, 1011 on the socket)', skipWithInfo(0x4a)],
  ['delete ranges past 2^53', deletions([777, [927, 8], [1000, 2 ** 56]])],
  ['delete ranges overlapping', deletions([1, [3, 6], [5, 7]])],
  ['delete ranges out of order', deletions([1, [28, 18], [12, 9]])],
  ['a delete set naming a client twice', deletions([1, [3, 2]], [1, [0, 1]])],
  ['a right origin past 2^53', withRightOrigin([19, 2 ** 56])],
  ['a sub-document whose options set its guid', subDocument({ guid: null })],
];

/** An app's y-websocket connection: resolves with the close code the node answers `message` with. */
async function closeCodeFor(node: TestNode, doc: string, message: Uint8Array): Promise<number> {
  const ws = new WebSocket(`ws://127.0.0.1:${node.daemon.apiAddress.port}/v1/yjs/${doc}?token=${await node.token()}`, { perMessageDeflate: false });
  onTestFinished(() => ws.terminate());
  ws.on('error', () => undefined);
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  await new Promise((resolve) => ws.once('message', resolve));
  ws.send(message);
  return closed;
}

/** Errors the node logged with an exception: none is expected from bad input. */
const internalErrors = (node: TestNode) => node.lines.filter((l) => Number(l.level) >= 50 && 'err' in l).map((l) => `${String(l.msg)}: ${(l.err as { message?: string }).message}`);

/** The node serves, its store verifies, and `doc` takes an honest write and reads back. */
async function expectSound(node: TestNode, doc: string): Promise<void> {
  expect((await fetch(`${node.api}/healthz`)).status).toBe(200);
  expect((await postUpdate(node, doc, appDoc().edit((d) => d.getMap('after').set('ok', true)))).status).toBe(200);
  expect((await getDoc(node, doc)).body.after).toEqual({ ok: true });
  expect(await node.daemon.verify()).toMatchObject({ ok: true, problems: [] });
  expect(internalErrors(node)).toEqual([]);
}

describe('end to end: the worst cases through a daemon', () => {
  it('from an app: 400 on POST, 4400 on the y-websocket route; nothing stored; the node and its store stay sound', async () => {
    const node = await testNode('audit');
    for (const [i, [what, u]] of WORST.entries()) {
      const posted = await postUpdate(node, `worst/post-${i}`, u);
      expect(`${what}: ${posted.status} ${(posted.body.error as { code?: string } | undefined)?.code}`).toBe(`${what}: 400 bad_update`);
      expect(`${what}: ${await closeCodeFor(node, `worst/ws-${i}`, syncMessage(2, u))}`).toBe(`${what}: 4400`);
    }
    expect(node.daemon.docs.names().filter((d) => d.startsWith('worst/'))).toEqual([]);
    await expectSound(node, 'worst/post-0');
  });

  it('from a peer: a delete set past 2^53 is refused; before, it was applied and the document failed every later read and write', async () => {
    const node = await testNode('audit');
    const m = await mallory(node, [], [], { read: [], write: ['x/**'] });
    const feed = newFeed();
    m.peer.offer(envelope(m.pair, { doc: 'x/ds', feed, seq: 1, update: deletions([777, [927, 8], [1000, 2 ** 56]]) }));
    await m.settle();
    expect((await node.daemon.docs.vector('x/ds' as DocName))[`${m.pair.id}:${feed}`]).toBeUndefined();
    await expectSound(node, 'x/ds');
  });

  it('content Yjs cannot render as JSON (an XML child, types nested 5000 deep): the document reads, 200', async () => {
    const node = await testNode('audit');
    const xml = xmlBase();
    expect((await postUpdate(node, 'render/xml', Y.encodeStateAsUpdate(xml))).status).toBe(200);
    expect((await postUpdate(node, 'render/xml', childOf([1, 0], 8, anyValue(null)))).status).toBe(200);
    const read = await getDoc(node, 'render/xml');
    expect(read).toEqual({ status: 200, body: { x: '<p a="b">null</p>xml' } });
    expect((await postUpdate(node, 'render/deep', nestedArrays(5000))).status).toBe(200);
    expect((await getDoc(node, 'render/deep')).status).toBe(200);
    await expectSound(node, 'render/deep');
  });
});
