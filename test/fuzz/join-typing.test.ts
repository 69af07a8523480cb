import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as Y from 'yjs';
import { joinTypingIn, newPart } from '../../src/sync/new-part.js';
import { LiveDoc } from '../../src/sync/live-doc.js';
import type { DocName } from '../../src/types.js';
import { parseUpdate, StructKind } from '../../src/yjs/parse.js';
import { concatUpdates } from '../../src/yjs/build.js';
import * as encoding from 'lib0/encoding';

/**
 * Joining runs of typing into one struct (what a node does before it signs
 * an app's batch) must not change what any document ends up holding: the
 * joined updates, applied in any order, give the same content and state as
 * the keystrokes themselves, with concurrent writers, deletions and map
 * entries in the mix.
 */

const op = fc.record({
  writer: fc.nat(2),
  kind: fc.constantFrom('type', 'type', 'type', 'type', 'move', 'follow', 'follow', 'insert', 'delete', 'mapSet', 'mapText', 'arrayPush', 'sync', 'sync'),
  pos: fc.nat(),
  text: fc.constantFrom('a', 'b', 'xy', 'é', '😀', 'z'),
});

function play(ops: readonly { writer: number; kind: string; pos: number; text: string }[]): Uint8Array[][] {
  const writers = [0, 1, 2].map((i) => {
    const doc = new Y.Doc();
    doc.clientID = 100 + i;
    return doc;
  });
  const updates: Uint8Array[][] = writers.map(() => []);
  // Each writer types at its caret, so runs go on across syncs that bring others' text in at the same place.
  const carets = writers.map(() => 0);
  writers.forEach((doc, i) => doc.on('update', (u: Uint8Array, origin: unknown) => origin !== 'sync' && updates[i]!.push(u)));
  for (const o of ops) {
    const doc = writers[o.writer]!;
    const text = doc.getText('t');
    const map = doc.getMap<unknown>('m');
    const caret = Math.min(carets[o.writer]!, text.length);
    if (o.kind === 'type') {
      for (const [i, ch] of [...o.text.repeat(3)].entries()) text.insert(caret + i * ch.length, ch);
      carets[o.writer] = caret + o.text.length * 3;
    } else if (o.kind === 'move') carets[o.writer] = o.pos % (text.length + 1);
    // Where another writer's caret is: concurrent typing at one place, the case where runs must not join across.
    else if (o.kind === 'follow') carets[o.writer] = carets[(o.writer + 1 + (o.pos % 2)) % 3]!;
    else if (o.kind === 'insert') text.insert(o.pos % (text.length + 1), o.text);
    else if (o.kind === 'delete' && text.length) text.delete(o.pos % text.length, 1 + (o.pos % 3));
    else if (o.kind === 'mapSet') for (const ch of o.text.repeat(3)) map.set(`k${o.pos % 2}`, ch);
    else if (o.kind === 'mapText') {
      const inner = map.get('inner') instanceof Y.Text ? (map.get('inner') as Y.Text) : (map.set('inner', new Y.Text()) as Y.Text);
      for (const ch of o.text.repeat(2)) inner.insert(inner.length, ch);
    } else if (o.kind === 'arrayPush') for (const ch of o.text.repeat(2)) doc.getArray('a').push([ch]);
    else if (o.kind === 'sync') {
      const other = writers[(o.writer + 1 + (o.pos % 2)) % 3]!;
      Y.applyUpdate(doc, Y.encodeStateAsUpdate(other, Y.encodeStateVector(doc)), 'sync');
    }
  }
  return updates;
}

/** What a document holds: its content, and its state vector and delete set (the snapshot). */
const view = (doc: Y.Doc) => ({ t: doc.getText('t').toString(), m: doc.getMap('m').toJSON(), a: doc.getArray('a').toJSON(), snapshot: Buffer.from(Y.encodeSnapshot(Y.snapshot(doc))).toString('hex') });

describe('joining runs of typing before signing', () => {
  it('joins a run of keystrokes into one struct', () => {
    const doc = new Y.Doc();
    const ups: Uint8Array[] = [];
    doc.on('update', (u: Uint8Array) => ups.push(u));
    for (const ch of 'hello, world') doc.getText('t').insert(doc.getText('t').length, ch);
    const joined = joinTypingIn(new Y.Doc(), Y.mergeUpdates(ups));
    expect(parseUpdate(joined).structs).toHaveLength(1);
    const out = new Y.Doc();
    Y.applyUpdate(out, joined);
    expect(out.getText('t').toString()).toBe('hello, world');
  });

  it('a keystroke already pending here stays apart from the new one typed after it, which is signed', () => {
    // Client 5 writes "a", client 7 "b" after it; client 9 types "z" between them, then "w" after "z".
    const five = new Y.Doc();
    five.clientID = 5;
    five.getText('t').insert(0, 'a');
    const seven = new Y.Doc();
    seven.clientID = 7;
    Y.applyUpdate(seven, Y.encodeStateAsUpdate(five));
    seven.getText('t').insert(1, 'b');
    const nine = new Y.Doc();
    nine.clientID = 9;
    Y.applyUpdate(nine, Y.encodeStateAsUpdate(seven));
    const sv = Y.encodeStateVector(nine);
    nine.getText('t').insert(1, 'z');
    const z = Y.encodeStateAsUpdate(nine, sv);
    const sv2 = Y.encodeStateVector(nine);
    nine.getText('t').insert(2, 'w');
    const w = Y.encodeStateAsUpdate(nine, sv2);
    // The node holds "a" and got "z" (through another node) before "b": "z" is pending there.
    const live = new LiveDoc('t/pending' as DocName, {});
    Y.applyUpdate(live.ydoc, Y.encodeStateAsUpdate(five));
    Y.applyUpdate(live.ydoc, z);
    expect(live.ydoc.store.pendingStructs).not.toBeNull();
    // The app sends both keystrokes in one batch: "w" is new and must be signed.
    const joined = joinTypingIn(live.ydoc, Y.mergeUpdates([z, w]));
    const signed = newPart(live, joined, []);
    expect(signed?.parsed.structs.map((s) => [s.client, s.clock, s.length])).toEqual([[9, 1, 1]]);
  });

  it('joins in time linear in the update: 80,000 keystrokes that do not continue each other', () => {
    const doc = new Y.Doc();
    for (let i = 0; i < 80_000; i++) doc.getText('t').insert(0, 'x');
    const merged = Y.encodeStateAsUpdate(doc);
    const joined = joinTypingIn(new Y.Doc(), merged);
    const out = new Y.Doc();
    Y.applyUpdate(out, joined);
    expect(out.getText('t').length).toBe(80_000);
  });

  it('leaves map entries alone: repeated sets of one key stay separate structs', () => {
    const doc = new Y.Doc();
    const ups: Uint8Array[] = [];
    doc.on('update', (u: Uint8Array) => ups.push(u));
    for (const v of ['a', 'b', 'c']) doc.getMap('m').set('k', v);
    const merged = Y.mergeUpdates(ups);
    expect(joinTypingIn(new Y.Doc(), merged)).toBe(merged);
  });

  it('does not join across text another writer put in between (same origin, other right origin)', () => {
    for (const [mine, theirs] of [[200, 100], [100, 200]]) {
      const w = new Y.Doc();
      w.clientID = mine;
      const v = new Y.Doc();
      v.clientID = theirs;
      const ups: Uint8Array[] = [];
      w.on('update', (u: Uint8Array, origin: unknown) => origin !== 'sync' && ups.push(u));
      w.getText('t').insert(0, 'a');
      Y.applyUpdate(v, Y.encodeStateAsUpdate(w), 'sync');
      v.getText('t').insert(1, 'X');
      Y.applyUpdate(w, Y.encodeStateAsUpdate(v), 'sync');
      w.getText('t').insert(1, 'b');
      const joined = joinTypingIn(new Y.Doc(), Y.mergeUpdates(ups));
      for (const order of [[joined, Y.encodeStateAsUpdate(v)], [Y.encodeStateAsUpdate(v), joined]]) {
        const r = new Y.Doc();
        for (const u of order) Y.applyUpdate(r, u);
        expect(r.getText('t').toString()).toBe('abX');
      }
    }
  });

  it('leaves alone strings that are map entries, even when an update states them so by hand', () => {
    // Two string structs under key k of root map m, the second continuing the first: as
    // separate entries the first is overwritten (deleted); joined it would stay.
    const e = encoding.createEncoder();
    encoding.writeVarUint(e, 1);
    encoding.writeVarUint(e, 2);
    encoding.writeVarUint(e, 5);
    encoding.writeVarUint(e, 0);
    encoding.writeUint8(e, StructKind.string | 0x20);
    encoding.writeVarUint(e, 1);
    encoding.writeVarString(e, 'm');
    encoding.writeVarString(e, 'k');
    encoding.writeVarString(e, 'a');
    encoding.writeUint8(e, StructKind.string | 0x80);
    encoding.writeVarUint(e, 5);
    encoding.writeVarUint(e, 0);
    encoding.writeVarString(e, 'b');
    encoding.writeVarUint(e, 0);
    const crafted = encoding.toUint8Array(e);
    const joined = joinTypingIn(new Y.Doc(), crafted);
    const [separate, together] = [crafted, joined].map((u) => {
      const d = new Y.Doc();
      Y.applyUpdate(d, u);
      return view(d);
    });
    expect(together).toEqual(separate);
    // And a continuation whose origin is a map entry held by the document is not a run's start either.
    const held = new Y.Doc();
    Y.applyUpdate(held, crafted);
    const e2 = encoding.createEncoder();
    encoding.writeVarUint(e2, 1);
    encoding.writeVarUint(e2, 2);
    encoding.writeVarUint(e2, 5);
    encoding.writeVarUint(e2, 2);
    for (const [clock, ch] of [[1, 'c'], [2, 'd']] as const) {
      encoding.writeUint8(e2, StructKind.string | 0x80);
      encoding.writeVarUint(e2, 5);
      encoding.writeVarUint(e2, clock);
      encoding.writeVarString(e2, ch);
    }
    encoding.writeVarUint(e2, 0);
    const next = encoding.toUint8Array(e2);
    expect(joinTypingIn(held, next)).toBe(next);
  });

  it('keystrokes concatenated without merging parse as they are and apply as Y.mergeUpdates would; anything else is left to it', () => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 30 }), fc.nat(), fc.nat(), (ops, from, size) => {
        const perWriter = play(ops);
        const list = perWriter[from % 3]!;
        const batch = list.slice(from % (list.length + 1), (from % (list.length + 1)) + 1 + (size % 8));
        if (!batch.length) return;
        const cat = concatUpdates(batch.map((update) => ({ update, parsed: parseUpdate(update) })));
        const deletes = batch.some((u) => parseUpdate(u).deletes.size > 0);
        if (deletes) expect(cat).toBeUndefined();
        if (!cat) return;
        expect(parseUpdate(cat.update)).toEqual(cat.parsed);
        const [viaCat, viaMerge] = [cat.update, Y.mergeUpdates(batch)].map((u) => {
          const d = new Y.Doc();
          for (const earlier of list.slice(0, list.indexOf(batch[0]!))) Y.applyUpdate(d, earlier);
          Y.applyUpdate(d, u);
          return view(d);
        });
        expect(viaCat).toEqual(viaMerge);
      }),
      { numRuns: 300 },
    );
  });

  it('any batching, joined, converges with the keystrokes applied one by one, in any order', () => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 40 }), fc.array(fc.nat(), { minLength: 60, maxLength: 60 }), (ops, cuts) => {
        const perWriter = play(ops);
        // The node: batches of each writer's updates, interleaved, joined against the node's doc as it is.
        const node = new Y.Doc();
        const joined: Uint8Array[] = [];
        const cursor = perWriter.map(() => 0);
        let k = 0;
        while (cursor.some((c, i) => c < perWriter[i]!.length)) {
          const i = cuts[k++ % cuts.length]! % 3;
          const list = perWriter[i]!;
          if (cursor[i]! >= list.length) continue;
          const n = 1 + (cuts[k++ % cuts.length]! % 6);
          const batch = list.slice(cursor[i], cursor[i]! + n);
          cursor[i]! += batch.length;
          const j = joinTypingIn(node, Y.mergeUpdates(batch));
          joined.push(j);
          Y.applyUpdate(node, j);
        }
        const reference = new Y.Doc();
        for (const u of perWriter.flat()) Y.applyUpdate(reference, u);
        const reversed = new Y.Doc();
        for (const u of [...joined].reverse()) Y.applyUpdate(reversed, u);
        expect(view(node)).toEqual(view(reference));
        expect(view(reversed)).toEqual(view(reference));
        // A writer that receives the joined form of what others wrote ends where they do.
        const late = new Y.Doc();
        for (const u of joined) Y.applyUpdate(late, u);
        for (const u of perWriter.flat()) Y.applyUpdate(late, u);
        expect(view(late)).toEqual(view(reference));
      }),
      { numRuns: 500 },
    );
  });
});
