/**
 * The state digest peers compare (DESIGN.md §4) is the same on nodes that
 * hold the same envelopes however each came by its state: applied one
 * envelope at a time, or loaded from a snapshot after a restart. Yjs joins
 * adjacent structs only where a transaction touched them, so a state applied
 * piecemeal and the same state loaded whole encoded differently (two GC runs
 * side by side against one), and an honest restart raised digest_mismatch.
 */
import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import type { DocName } from '../../src/types.js';
import { linkPair, testNode } from '../helpers/cluster.js';
import { digests } from '../helpers/authority.js';
import { postUpdate } from '../helpers/docs.js';
import { containers, randomDocument } from '../helpers/random-doc.js';
import { rng } from '../helpers/rng.js';
import { waitUntil } from '../helpers/wait.js';

/** A random document, then 40 edits of another client to it, each its own update (seed 1 leaves two GC runs side by side). */
function history(seed: number): Uint8Array[] {
  const r = rng(seed);
  const editor = new Y.Doc();
  editor.clientID = 9;
  Y.applyUpdate(editor, randomDocument(seed));
  const updates = [Y.encodeStateAsUpdate(editor)];
  editor.on('update', (u: Uint8Array) => updates.push(u));
  for (let i = 0; i < 40; i++) {
    editor.transact(() => {
      const t = r.pick(containers(editor).filter((c): c is Y.Array<unknown> => c instanceof Y.Array));
      if (t.length && r.chance(0.5)) t.delete(r.int(t.length), 1);
      else t.insert(r.int(t.length + 1), [r.int(9)]);
    });
  }
  return updates;
}

describe('the state digest', () => {
  it('is the same on a node that applied the envelopes one by one and on one that loaded its snapshot after a restart', async () => {
    const a = await testNode('a');
    let b = await testNode('b');
    await linkPair(a, b);
    const doc = 'digest/doc';
    const updates = history(1);
    for (const u of updates) expect((await postUpdate(a, doc, u)).status).toBe(200);
    const own = a.daemon.docs.ownFeed;
    await waitUntil(async () => (await b.daemon.docs.vector(doc as DocName))[own] === updates.length, { what: 'b holds every envelope' });
    const before = await digests([a, b], doc);
    expect(before.b).toBe(before.a);

    await b.daemon.stop();
    b = await testNode('b', {}, b.dir);
    const after = await digests([a, b], doc);
    expect(after).toEqual({ a: before.a, b: before.a });
  });
});
