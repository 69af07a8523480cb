/**
 * Five real daemons, fully meshed on loopback, edited everywhere at once
 * (DESIGN.md §4, §5): they converge to the same JSON and the same encoded
 * state, each holding every envelope of every feed.
 */
import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { entryFor, peerState, setPeers, testNode, type TestNode } from '../helpers/cluster.js';
import { appDoc, getDoc, postUpdate } from '../helpers/docs.js';
import { waitUntil } from '../helpers/wait.js';
import type { DocName } from '../../src/types.js';

/** JSON with object keys sorted: map key order depends on arrival order, content does not. */
function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) =>
    x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1))) : x,
  );
}

/** Every node lists every other; node i dials node j > i. Files are written listener-first so no dial meets an unknown peer. */
async function mesh(nodes: TestNode[]): Promise<void> {
  for (let i = nodes.length - 1; i >= 0; i--) {
    await setPeers(nodes[i]!, nodes.filter((_, j) => j !== i).map((other) => entryFor(other, { dial: nodes.indexOf(other) > i })));
  }
  await waitUntil(
    async () => {
      for (const a of nodes) for (const b of nodes) if (a !== b && (await peerState(a, b)) !== 'connected') return false;
      return true;
    },
    { what: 'every pair connected', timeoutMs: 30_000 },
  );
}

describe('replication in a five-node mesh', () => {
  it('concurrent edits on all five nodes converge to identical JSON and identical encoded state', async () => {
    const nodes = await Promise.all(['n0', 'n1', 'n2', 'n3', 'n4'].map((n) => testNode(n)));
    await mesh(nodes);
    const doc = 'mesh/doc';
    const rounds = 6;

    // Each node's own app edits a map, an array and a text at once, several rounds, all nodes concurrently.
    await Promise.all(
      nodes.map(async (node, i) => {
        const app = appDoc();
        for (let r = 0; r < rounds; r++) {
          const update = app.edit((d) => {
            d.getMap('m').set(`${node.name}-${r}`, { node: i, round: r });
            d.getArray('a').push([`${node.name}:${r}`]);
            d.getText('t').insert(0, `${i}`);
            if (r === rounds - 1) d.getArray('a').delete(0, 1); // one deletion of its own item each
          });
          const res = await postUpdate(node, doc, update);
          expect(res.status).toBe(200);
        }
      }),
    );

    const expectedItems = nodes.length * (rounds - 1);
    await waitUntil(
      async () => {
        const bodies = await Promise.all(nodes.map((n) => getDoc(n, doc)));
        if (bodies.some((b) => b.status !== 200)) return false;
        const first = bodies[0]!.body as { m?: object; a?: unknown[]; t?: string };
        if (!first.m || Object.keys(first.m).length !== nodes.length * rounds || first.a?.length !== expectedItems) return false;
        return bodies.every((b) => canonical(b.body) === canonical(first));
      },
      { what: 'all five documents identical and complete', timeoutMs: 30_000 },
    );

    const bodies = await Promise.all(nodes.map((n) => getDoc(n, doc)));
    const json = bodies[0]!.body as { m: Record<string, unknown>; a: string[]; t: string };
    expect(json.t).toHaveLength(nodes.length * rounds);
    for (const n of nodes) for (let r = 0; r < rounds - 1; r++) expect(json.a).toContain(`${n.name}:${r + 1}`);
    expect(new Set(json.a).size).toBe(json.a.length);

    // The same envelopes everywhere: equal vectors, one feed per node, each at `rounds`.
    const vectors = await Promise.all(nodes.map((n) => n.daemon.docs.vector(doc as DocName)));
    for (const v of vectors) expect(v).toEqual(vectors[0]);
    expect(Object.keys(vectors[0]!)).toHaveLength(nodes.length);
    for (const n of nodes) expect(vectors[0]![n.daemon.docs.ownFeed]).toBe(rounds);

    // Identical encoded state (the digest peers compare), not only identical JSON.
    const digests = await Promise.all(nodes.map((n) => n.daemon.docs.digest(doc as DocName)));
    expect(new Set(digests).size).toBe(1);

    // And each copy, rebuilt from its encoded state, is the same document.
    const states = await Promise.all(nodes.map(async (n) => Y.encodeStateAsUpdate((await n.daemon.docs.open(doc as DocName)).ydoc)));
    for (const s of states) expect(Buffer.from(s).equals(Buffer.from(states[0]!))).toBe(true);

    for (const n of nodes) expect((await n.daemon.verify()).ok).toBe(true);
  });
});
