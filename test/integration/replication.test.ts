import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { entryFor, peerState, setPeers, testNode, type TestNode } from '../helpers/cluster.js';
import { appDoc, getDoc, getState, postUpdate } from '../helpers/docs.js';
import { waitUntil } from '../helpers/wait.js';

async function linked(a: TestNode, b: TestNode, opts: { aSeesB?: object; bSeesA?: object } = {}) {
  await setPeers(b, [entryFor(a, { dial: false, ...opts.bSeesA })]);
  await setPeers(a, [entryFor(b, opts.aSeesB)]);
  await waitUntil(async () => (await peerState(a, b)) === 'connected' && (await peerState(b, a)) === 'connected', { what: 'connected' });
}

describe('replication', () => {
  it('a write on A appears on B, and a write on B appears on A', async () => {
    const a = await testNode('a');
    const b = await testNode('b');
    await linked(a, b);
    const app = appDoc();
    const r = await postUpdate(a, 'notes/x', app.edit((d) => d.getText('t').insert(0, 'hello')));
    expect(r.status).toBe(200);
    await waitUntil(async () => (await getDoc(b, 'notes/x')).body.t === 'hello', { what: 'B has the text' });

    const app2 = appDoc();
    Y.applyUpdate(app2.doc, await getState(b, 'notes/x'));
    const r2 = await postUpdate(b, 'notes/x', app2.edit((d) => d.getText('t').insert(5, ' world')));
    expect(r2.status).toBe(200);
    await waitUntil(async () => (await getDoc(a, 'notes/x')).body.t === 'hello world', { what: 'A has both edits' });
  });

  it('an app whose whole state is posted again signs nothing', async () => {
    const a = await testNode('a');
    const app = appDoc();
    const first = await postUpdate(a, 'd', app.edit((d) => d.getMap('m').set('k', 1)));
    const again = await postUpdate(a, 'd', Y.encodeStateAsUpdate(app.doc));
    expect(again.status).toBe(200);
    expect(again.body.vector).toEqual(first.body.vector);
  });

  it('a chain A-B-C: a write on A reaches C, which verifies A wrote it', async () => {
    const a = await testNode('a');
    const b = await testNode('b');
    const c = await testNode('c');
    await setPeers(a, [entryFor(b, { dial: false })]);
    await setPeers(c, [entryFor(b, { dial: false }), { ...entryFor(a, { dial: false }) }]);
    await setPeers(b, [entryFor(a), entryFor(c)]);
    await waitUntil(async () => (await peerState(b, a)) === 'connected' && (await peerState(b, c)) === 'connected');
    const app = appDoc();
    await postUpdate(a, 'chain', app.edit((d) => d.getArray('items').push(['one', 'two'])));
    await waitUntil(async () => JSON.stringify((await getDoc(c, 'chain')).body.items) === '["one","two"]', { what: 'C has the items' });
    const res = await fetch(`${c.api}/v1/docs/chain/authors`, { headers: { authorization: `Bearer ${await c.token()}` } });
    const { authors } = (await res.json()) as { authors: { origin: string; name: string; envelopes: number }[] };
    expect(authors).toHaveLength(1);
    expect(authors[0]).toMatchObject({ origin: a.id, name: 'a', envelopes: 1 });
    expect((await c.daemon.verify()).ok).toBe(true);
  });
});
