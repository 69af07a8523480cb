/**
 * What apps do that replication must survive (DESIGN.md §4): delete an item
 * the node does not hold yet (signed once the item arrives), and keep one
 * Y.Doc while moving from node A to node B as replication lags (the same
 * client id, overlapping and new clocks, signed by two origins).
 */
import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import type { DocName } from '../../src/types.js';
import { entryFor, peerState, setPeers, testNode, type TestNode } from '../helpers/cluster.js';
import { appDoc, getDoc, getState, postUpdate } from '../helpers/docs.js';
import { startDaemon } from '../helpers/node.js';
import { tcpProxy } from '../helpers/proxy.js';
import { waitUntil } from '../helpers/wait.js';

const connected = async (x: TestNode, y: TestNode) => (await peerState(x, y)) === 'connected' && (await peerState(y, x)) === 'connected';

function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) =>
    x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([p], [q]) => (p < q ? -1 : 1))) : x,
  );
}

/** The delete-only update an app produces when it deletes item `index` of array `a`, given the state it was synced to. */
function deletionFrom(state: Uint8Array, index: number): Uint8Array {
  const app = appDoc();
  Y.applyUpdate(app.doc, state);
  return app.edit((d) => d.getArray('a').delete(index, 1));
}

describe('app behaviours', () => {
  it('a deletion of an item the node does not hold yet is signed once the item arrives', async () => {
    const a = await testNode('a');
    const b = await testNode('b');
    const doc = 'apps/del' as DocName;
    // The item is created on b; a has never seen it.
    await postUpdate(b, doc, appDoc().edit((d) => d.getArray('a').push(['keep', 'gone'])));
    const del = deletionFrom(await getState(b, doc), 1);
    expect(Y.decodeUpdate(del).structs).toHaveLength(0); // delete-only

    // An app synced from b posts its deletion to a, before a and b are linked.
    const res = await postUpdate(a, doc, del);
    expect(res.status).toBe(200);
    expect((await a.daemon.docs.vector(doc))[a.daemon.docs.ownFeed]).toBeUndefined(); // nothing to sign yet

    await setPeers(b, [entryFor(a, { dial: false })]);
    await setPeers(a, [entryFor(b)]);
    await waitUntil(() => connected(a, b), { what: 'connected' });
    for (const node of [a, b]) {
      await waitUntil(async () => JSON.stringify((await getDoc(node, doc)).body.a) === '["keep"]', { what: `${node.name} has the item deleted` });
    }
    // a signed exactly one envelope: the deletion, once b's item was there.
    expect((await a.daemon.docs.vector(doc))[a.daemon.docs.ownFeed]).toBe(1);
    await waitUntil(async () => (await b.daemon.docs.vector(doc))[a.daemon.docs.ownFeed] === 1, { what: "b holds a's deletion" });
    expect(await a.daemon.docs.digest(doc)).toBe(await b.daemon.docs.digest(doc));
    expect((await a.daemon.verify()).ok).toBe(true);
    expect((await b.daemon.verify()).ok).toBe(true);
  });

  it('a deferred deletion survives the document being unloaded while it waits for its item', async () => {
    const a = await testNode('a', { docIdleTimeout: '1s' });
    const b = await testNode('b');
    const doc = 'apps/del-idle' as DocName;
    await postUpdate(b, doc, appDoc().edit((d) => d.getArray('a').push(['keep', 'gone'])));
    expect((await postUpdate(a, doc, deletionFrom(await getState(b, doc), 1))).status).toBe(200);
    // The idle sweeper unloads the document on a before the item arrives.
    await waitUntil(() => a.daemon.docs.loadedCount === 0, { what: 'the doc unloaded on a' });

    await setPeers(b, [entryFor(a, { dial: false })]);
    await setPeers(a, [entryFor(b)]);
    await waitUntil(() => connected(a, b));
    await waitUntil(async () => (await getDoc(a, doc)).status === 200, { what: "a has b's item" });
    for (const node of [a, b]) {
      await waitUntil(async () => JSON.stringify((await getDoc(node, doc)).body.a) === '["keep"]', { what: `${node.name} has the item deleted`, timeoutMs: 10_000 });
    }
  });

  it('a deferred deletion acknowledged with 200 survives a restart of the node before its item arrives', async () => {
    const a = await testNode('a');
    const b = await testNode('b');
    const doc = 'apps/del-restart' as DocName;
    await postUpdate(b, doc, appDoc().edit((d) => d.getArray('a').push(['keep', 'gone'])));
    expect((await postUpdate(a, doc, deletionFrom(await getState(b, doc), 1))).status).toBe(200);
    // "200 once durable": the node restarts on the same folder before the item arrives.
    await a.daemon.stop();
    const restarted = await startDaemon({ dir: a.dir });
    const a2: TestNode = { ...a, daemon: restarted.daemon, lines: restarted.lines, api: restarted.api, url: `ws://127.0.0.1:${restarted.daemon.peerAddress.port}` };

    await setPeers(b, [entryFor(a2, { dial: false })]);
    await setPeers(a2, [entryFor(b)]);
    await waitUntil(() => connected(a2, b));
    await waitUntil(async () => (await getDoc(a2, doc)).status === 200, { what: "a has b's item" });
    for (const node of [a2, b]) {
      await waitUntil(async () => JSON.stringify((await getDoc(node, doc)).body.a) === '["keep"]', { what: `${node.name} has the item deleted`, timeoutMs: 10_000 });
    }
  });

  it('an app that keeps its Y.Doc and moves from A to B while replication lags keeps replicating; every node converges', async () => {
    // c–a direct; b–a through a proxy the test cuts to make b lag. No c–b link.
    const a = await testNode('a');
    const b = await testNode('b', { reconnectMax: '500ms' });
    const c = await testNode('c');
    const toA = await tcpProxy({ port: a.daemon.peerAddress.port });
    await setPeers(a, [entryFor(b, { dial: false }), entryFor(c, { dial: false })]);
    await setPeers(b, [{ ...entryFor(a), url: toA.url }]);
    await setPeers(c, [entryFor(a), entryFor(b, { dial: false })]); // c trusts b's signature, never meets b
    await waitUntil(async () => (await connected(a, b)) && (await connected(a, c)), { what: 'linked' });

    const doc = 'apps/failover' as DocName;
    const app = appDoc(424242);
    const text = app.doc.getText('t');
    const texts = async () => Promise.all([a, b, c].map(async (n) => (await getDoc(n, doc)).body.t));

    // e1 on A, replicated everywhere.
    expect((await postUpdate(a, doc, app.edit(() => text.insert(0, 'one ')))).status).toBe(200);
    await waitUntil(async () => (await texts()).every((t) => t === 'one '), { what: 'e1 everywhere' });

    // b falls behind: e2 reaches a (and c) only.
    toA.cut();
    await waitUntil(async () => (await peerState(b, a)) !== 'connected', { what: 'b cut off' });
    expect((await postUpdate(a, doc, app.edit(() => text.insert(4, 'two ')))).status).toBe(200);
    await waitUntil(async () => (await getDoc(c, doc)).body.t === 'one two ', { what: 'c has e2' });

    // The app edits offline (e3), then fails over to b and syncs its whole state there:
    // e1 b holds, e2 it lacks (same client id and clocks a signed), e3 new to everyone.
    app.edit(() => text.insert(8, 'three '));
    const failover = await postUpdate(b, doc, Y.encodeStateAsUpdate(app.doc));
    expect(failover.status).toBe(200);
    expect(failover.body.vector).toMatchObject({ [b.daemon.docs.ownFeed]: 1 });
    expect((await postUpdate(b, doc, app.edit(() => text.insert(14, 'four')))).status).toBe(200);
    expect((await getDoc(b, doc)).body.t).toBe('one two three four');

    toA.heal();
    await waitUntil(async () => (await texts()).every((t) => t === 'one two three four'), { what: 'every node converged', timeoutMs: 30_000 });

    const bodies = await Promise.all([a, b, c].map((n) => getDoc(n, doc)));
    for (const x of bodies) expect(canonical(x.body)).toBe(canonical(bodies[0]!.body));
    const digests = await Promise.all([a, b, c].map((n) => n.daemon.docs.digest(doc)));
    expect(new Set(digests).size).toBe(1);
    const vectors = await Promise.all([a, b, c].map((n) => n.daemon.docs.vector(doc)));
    for (const v of vectors) expect(v).toEqual({ [a.daemon.docs.ownFeed]: 2, [b.daemon.docs.ownFeed]: 2 });
    // Identical structs under two origins are not an equivocation.
    for (const n of [a, b, c]) {
      expect(n.lines.filter((l) => String(l.msg).includes('equivocation'))).toEqual([]);
      expect((await n.daemon.verify()).ok).toBe(true);
    }
    // Both origins claim the overlapping clocks of the app's client id.
    const res = await fetch(`${c.api}/v1/docs/${encodeURIComponent(doc)}/authors`, { headers: { authorization: `Bearer ${await c.token()}` } });
    const { authors } = (await res.json()) as { authors: { origin: string; clients: [number, number, number][] }[] };
    const byOrigin = Object.fromEntries(authors.map((x) => [x.origin, x.clients]));
    expect(byOrigin[a.id]).toEqual([[424242, 0, 8]]);
    expect(byOrigin[b.id]).toEqual([[424242, 4, 18]]);

    // And the app keeps going on b afterwards; a and c follow.
    expect((await postUpdate(b, doc, app.edit(() => text.insert(18, '!')))).status).toBe(200);
    await waitUntil(async () => (await texts()).every((t) => t === 'one two three four!'), { what: 'later edit everywhere' });
  });
});
