import { describe, expect, it, onTestFinished } from 'vitest';
import * as Y from 'yjs';
import WebSocket from 'ws';
import { WebsocketProvider } from 'y-websocket';
import { linkPair, testNode, type TestNode } from '../helpers/cluster.js';
import { getDoc } from '../helpers/docs.js';
import { waitUntil } from '../helpers/wait.js';
import { syncMessage } from '../helpers/api.js';

function provider(node: TestNode, doc: string, token: string, ydoc = new Y.Doc()) {
  const p = new WebsocketProvider(`ws://127.0.0.1:${node.daemon.apiAddress.port}/v1/yjs`, doc, ydoc, {
    WebSocketPolyfill: WebSocket as never,
    params: { token },
    disableBc: true,
  });
  onTestFinished(() => {
    p.destroy();
    ydoc.destroy();
  });
  return { p, ydoc };
}

/** A y-websocket sync update message (messageSync, update) carrying `u`. */
const syncUpdate = (u: Uint8Array) => syncMessage(2, u);

const synced = (p: WebsocketProvider) => waitUntil(() => p.synced, { what: 'provider synced' });

describe('y-websocket endpoint', () => {
  it('an edit by an app on A appears in an app on B', async () => {
    const a = await testNode('a');
    const b = await testNode('b');
    await linkPair(a, b);
    const left = provider(a, 'notes/live', await a.token());
    const right = provider(b, 'notes/live', await b.token());
    await synced(left.p);
    await synced(right.p);
    left.ydoc.getText('t').insert(0, 'typed on a');
    await waitUntil(() => right.ydoc.getText('t').toString() === 'typed on a', { what: 'the edit on B' });
    right.ydoc.getText('t').insert(0, '>');
    await waitUntil(() => left.ydoc.getText('t').toString() === '>typed on a', { what: 'the edit back on A' });
    expect((await getDoc(b, 'notes/live')).body.t).toBe('>typed on a');
  });

  it('an app is not sent its own edits back; the other app on the doc gets them', async () => {
    const a = await testNode('a');
    const token = await a.token();
    const one = provider(a, 'notes/echo', token);
    const two = provider(a, 'notes/echo', token);
    await synced(one.p);
    await synced(two.p);
    const updatesTo = (p: WebsocketProvider) => {
      const seen = { n: 0 };
      p.ws!.addEventListener('message', (e: { data: unknown }) => {
        const bytes = new Uint8Array(e.data as ArrayBuffer);
        if (bytes[0] === 0 && bytes[1] === 2) seen.n++;
      });
      return seen;
    };
    const toOne = updatesTo(one.p);
    const toTwo = updatesTo(two.p);
    for (const ch of 'typed by one') one.ydoc.getText('t').insert(one.ydoc.getText('t').length, ch);
    await waitUntil(() => two.ydoc.getText('t').toString() === 'typed by one', { what: 'the edits on the other app' });
    expect(toTwo.n).toBeGreaterThan(0);
    expect(toOne.n).toBe(0);
    two.ydoc.getText('t').insert(0, '>');
    await waitUntil(() => one.ydoc.getText('t').toString() === '>typed by one', { what: 'the edit back on the first app' });
    expect((await getDoc(a, 'notes/echo')).body.t).toBe('>typed by one');
  });

  it('an app gets back a deletion another app made of the items it is only now sending', async () => {
    const a = await testNode('a');
    const token = await a.token();
    // X writes "abc" while offline; P holds a copy of it and deletes the "b".
    const x = new Y.Doc();
    x.getText('t').insert(0, 'abc');
    const p = new Y.Doc();
    Y.applyUpdate(p, Y.encodeStateAsUpdate(x));
    p.getText('t').delete(1, 1);
    // P sends only its deletion (the node does not hold the items yet: it waits).
    const deletion = Y.encodeStateAsUpdate(p, Y.encodeStateVector(x));
    const raw = new WebSocket(`ws://127.0.0.1:${a.daemon.apiAddress.port}/v1/yjs/notes/deferred?token=${token}`);
    onTestFinished(() => raw.close());
    await new Promise((resolve, reject) => raw.once('open', resolve).once('error', reject));
    const marker = new Y.Doc();
    marker.getText('u').insert(0, 'z');
    // Messages of one connection are taken in order: once the marker is in, so is the deletion.
    for (const u of [deletion, Y.encodeStateAsUpdate(marker)]) raw.send(syncUpdate(u));
    await waitUntil(async () => (await getDoc(a, 'notes/deferred')).body.u === 'z', { what: 'the deletion taken' });
    // X comes online: its items are signed with P's deletion, and X must hear of it.
    const online = provider(a, 'notes/deferred', token, x);
    await synced(online.p);
    await waitUntil(() => x.getText('t').toString() === 'ac', { what: "P's deletion on X" });
    expect((await getDoc(a, 'notes/deferred')).body.t).toBe('ac');
  });

  it('keystrokes that reach the node in one read are signed as one envelope', async () => {
    const a = await testNode('a');
    const ws = new WebSocket(`ws://127.0.0.1:${a.daemon.apiAddress.port}/v1/yjs/notes/burst?token=${await a.token()}`);
    onTestFinished(() => ws.terminate());
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    const app = new Y.Doc();
    const updates: Uint8Array[] = [];
    app.on('update', (u: Uint8Array) => updates.push(u));
    for (const ch of 'abc') app.getText('t').insert(app.getText('t').length, ch);
    // One write on the wire: the node reads the three messages at once.
    const socket = (ws as unknown as { _socket: import('node:net').Socket })._socket;
    socket.cork();
    for (const u of updates) ws.send(syncUpdate(u));
    socket.uncork();
    await waitUntil(async () => (await getDoc(a, 'notes/burst')).body.t === 'abc', { what: 'the three keystrokes on the node' });
    const res = await fetch(`${a.api}/v1/docs`, { headers: { authorization: `Bearer ${await a.token()}` } });
    const { docs } = (await res.json()) as { docs: { name: string; vector: Record<string, number> }[] };
    // The node's own feed, at seq 1: one envelope for the three.
    expect(Object.values(docs.find((d) => d.name === 'notes/burst')!.vector)).toEqual([1]);
  });

  it('awareness travels between two apps on one node', async () => {
    const a = await testNode('a');
    const token = await a.token();
    const one = provider(a, 'room', token);
    const two = provider(a, 'room', token);
    await synced(one.p);
    await synced(two.p);
    one.p.awareness.setLocalStateField('user', { name: 'ada' });
    await waitUntil(() => [...two.p.awareness.getStates().values()].some((s) => (s as { user?: { name: string } }).user?.name === 'ada'), { what: 'awareness on the other app' });
  });

  it('a read-only app receives the document; its write closes the socket with 4403 and is not applied', async () => {
    const a = await testNode('a');
    const writer = provider(a, 'ro', await a.token());
    await synced(writer.p);
    writer.ydoc.getText('t').insert(0, 'from the writer');
    await waitUntil(async () => (await getDoc(a, 'ro')).body.t === 'from the writer');
    const reader = provider(a, 'ro', await a.token(['read:**']));
    await synced(reader.p);
    expect(reader.ydoc.getText('t').toString()).toBe('from the writer');
    const closed = new Promise<number>((resolve) => reader.p.ws!.addEventListener('close', (e: { code: number }) => resolve(e.code)));
    reader.ydoc.getText('t').insert(0, 'sneaky ');
    expect(await closed).toBe(4403);
    expect((await getDoc(a, 'ro')).body.t).toBe('from the writer');
  });

  it('refusals: bad token 4401, no scope 4403, bad name 4400; a disallowed Origin is refused before the upgrade', async () => {
    const a = await testNode('a');
    const port = a.daemon.apiAddress.port;
    const closeCode = (url: string, headers: Record<string, string> = {}) =>
      new Promise<number>((resolve) => {
        const ws = new WebSocket(url, { headers });
        ws.on('close', (code) => resolve(code));
        ws.on('unexpected-response', (_req, res) => resolve(res.statusCode!));
        ws.on('error', () => undefined);
      });
    expect(await closeCode(`ws://127.0.0.1:${port}/v1/yjs/x?token=nope`)).toBe(4401);
    expect(await closeCode(`ws://127.0.0.1:${port}/v1/yjs/x?token=${await a.token(['read:other/**'])}`)).toBe(4403);
    expect(await closeCode(`ws://127.0.0.1:${port}/v1/yjs/a//b?token=${await a.token()}`)).toBe(4400);
    expect(await closeCode(`ws://127.0.0.1:${port}/v1/yjs/x?token=${await a.token()}`, { origin: 'https://evil.example' })).toBe(403);
    expect(await closeCode(`ws://127.0.0.1:${port}/v1/yjs/x?token=${await a.token()}`, { host: 'evil.example' })).toBe(421);
  });
});
