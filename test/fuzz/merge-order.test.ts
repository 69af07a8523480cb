/**
 * Merging updates keeps everything whatever order their clients come in:
 * seeded random edits of several clients (text and maps, deletions, updates
 * with gaps), the updates rewritten with their clients ascending or
 * shuffled, merged with mergeBounded, give what applying them one by one
 * gives; and concatUpdates' parse matches a fresh parse of its bytes.
 */
import * as encoding from 'lib0/encoding';
import * as Y from 'yjs';
import { describe, expect, it } from 'vitest';
import { mergeBounded } from '../../src/sync/new-part.js';
import { concatUpdates } from '../../src/yjs/build.js';
import { parseUpdate } from '../../src/yjs/parse.js';
import { writeDeleteSet } from '../../src/yjs/build.js';

/** Rewrites `update` with its clients in `order` (a permutation of the clients it lists), bytes of each client kept whole (Skips included). */
function reorder(update: Uint8Array, order: (clients: number[]) => number[]): Uint8Array {
  const p = parseUpdate(update);
  const byClient = new Map<number, typeof p.structs[number][]>();
  for (const s of p.structs) (byClient.get(s.client) ?? byClient.set(s.client, []).get(s.client)!).push(s);
  const e = encoding.createEncoder();
  const clients = order([...byClient.keys()]);
  encoding.writeVarUint(e, clients.length);
  for (const c of clients) {
    const list = byClient.get(c)!;
    encoding.writeVarUint(e, list.length);
    encoding.writeVarUint(e, c);
    encoding.writeVarUint(e, list[0]!.clock);
    for (const s of list) encoding.writeUint8Array(e, update.subarray(s.start, s.end));
  }
  writeDeleteSet(e, new Map([...p.deletes].map(([c, r]) => [c, r.map(([a, b]) => [a, b] as [number, number])])));
  return encoding.toUint8Array(e);
}

let seed = 12345;
const rnd = (n: number) => {
  seed = (seed * 1103515245 + 12345) % 2 ** 31;
  return seed % n;
};

function shuffle<T>(a: T[]): T[] {
  const b = [...a];
  for (let i = b.length - 1; i > 0; i--) {
    const j = rnd(i + 1);
    [b[i], b[j]] = [b[j]!, b[i]!];
  }
  return b;
}

const stateOf = (updates: Uint8Array[]) => {
  const d = new Y.Doc({ gc: false });
  for (const u of updates) Y.applyUpdate(d, u);
  return { text: d.getText('t').toString(), map: d.getMap('m').toJSON(), sv: [...Y.decodeStateVector(Y.encodeStateVector(d))].sort(), ds: JSON.stringify([...Y.createDeleteSetFromStructStore(d.store).clients].sort()) };
};

describe('mergeBounded keeps everything whatever the client order', () => {
  it('random edits of several clients, some updates with Skips (gaps), in ascending / shuffled client order', () => {
    for (let round = 0; round < 150; round++) {
      const docs = [0, 1, 2, 3].map((i) => {
        const d = new Y.Doc({ gc: false });
        d.clientID = 1 + rnd(1000) * 4 + i;
        return d;
      });
      const all: Uint8Array[] = [];
      for (const d of docs) d.on('update', (u: Uint8Array) => all.push(u));
      for (let step = 0; step < 30; step++) {
        const d = docs[rnd(docs.length)]!;
        const t = d.getText('t');
        if (t.length && rnd(3) === 0) t.delete(rnd(t.length), 1);
        else if (rnd(4) === 0) d.getMap('m').set(`k${rnd(5)}`, step);
        else t.insert(rnd(t.length + 1), String.fromCharCode(97 + rnd(26)));
        // sync sometimes so that clients build on each other
        if (rnd(3) === 0) {
          const a = docs[rnd(docs.length)]!;
          const b = docs[rnd(docs.length)]!;
          Y.applyUpdate(b, Y.encodeStateAsUpdate(a, Y.encodeStateVector(b)));
        }
      }
      // Deduplicate: a doc applying another's update emits an update too.
      const groups: Uint8Array[] = [];
      // Updates with gaps (Skips): merge every other of a random slice.
      for (let i = 0; i < all.length; ) {
        const n = 1 + rnd(6);
        const slice = all.slice(i, i + n);
        const picked = slice.filter((_, j) => j % 2 === 0);
        const rest = slice.filter((_, j) => j % 2 === 1);
        if (picked.length) groups.push(Y.mergeUpdates(picked));
        if (rest.length) groups.push(Y.mergeUpdates(rest));
        i += n;
      }
      const orders = [(c: number[]) => [...c].sort((a, b) => a - b), (c: number[]) => shuffle(c)];
      const odd = groups.map((g) => reorder(g, orders[rnd(2)]!));
      const expected = stateOf(all);
      expect(stateOf(groups)).toEqual(expected);
      const merged = mergeBounded(shuffle(odd));
      expect(stateOf([merged]), `round ${round}`).toEqual(expected);
    }
  });

  it('concatUpdates: parsed matches the bytes it returns', () => {
    const a = new Y.Doc();
    a.clientID = 5;
    const b = new Y.Doc();
    b.clientID = 900;
    const c = new Y.Doc();
    c.clientID = 77;
    const ups: Uint8Array[] = [];
    for (const d of [a, b, c]) d.on('update', (u: Uint8Array) => ups.push(u));
    a.getText('t').insert(0, 'x');
    b.getText('u').insert(0, 'y');
    a.getText('t').insert(1, 'z');
    c.getMap('m').set('k', 1);
    b.getText('u').insert(1, 'w');
    const out = concatUpdates(ups.map((u) => ({ update: u, parsed: parseUpdate(u) })))!;
    expect(out).toBeDefined();
    const again = parseUpdate(out.update);
    const strip = (p: ReturnType<typeof parseUpdate>) => ({ ...p, structs: p.structs.map((s) => ({ ...s })) });
    expect(strip(out.parsed as never)).toEqual(strip(again));
    expect(stateOf([out.update])).toEqual(stateOf(ups));
  });
});
