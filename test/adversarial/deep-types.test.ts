/**
 * Types nested far deeper than Yjs's recursion goes, then deleted: the
 * deletion is durable and forwarded before it is applied, so a node that
 * overflowed its stack applying it would be left with a half-applied update
 * and the document broken everywhere. Nodes delete and collect nested types
 * with their own stack (src/yjs/type-walks.ts).
 */
import { describe, expect, it } from 'vitest';
import type { DocName } from '../../src/types.js';
import { linkPair, testNode } from '../helpers/cluster.js';
import { getDoc, postUpdate } from '../helpers/docs.js';
import { deletion, nestedArrays } from '../helpers/updates.js';
import { waitUntil } from '../helpers/wait.js';

describe('types nested 30,000 deep', () => {
  it('an app nests them and deletes the outermost: both nodes apply it, read the document, and read it again after a restart', async () => {
    const a = await testNode('a');
    let b = await testNode('b');
    await linkPair(a, b);
    const doc = 'deep/chain' as DocName;
    expect((await postUpdate(a, doc, nestedArrays(30_000))).status).toBe(200);
    await waitUntil(async () => (await b.daemon.docs.vector(doc))[a.daemon.docs.ownFeed] === 1, { what: 'b holds the nested types' });

    const deleted = await postUpdate(a, doc, deletion(7, 0));
    expect(deleted.status).toBe(200);
    for (const node of [a, b]) {
      await waitUntil(async () => JSON.stringify((await getDoc(node, doc)).body) === '{}', { what: `${node.name} reads the document with the chain deleted` });
    }

    await b.daemon.stop();
    b = await testNode('b', {}, b.dir);
    expect(await getDoc(b, doc)).toEqual({ status: 200, body: {} });
    // More writes still apply on top.
    expect((await postUpdate(b, doc, nestedArrays(3, 8))).status).toBe(200);
    expect((await getDoc(b, doc)).body).toEqual({ a: [[[[]]]] });
  }, 60_000);
});
