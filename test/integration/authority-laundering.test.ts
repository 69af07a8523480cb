import { describe, expect, it, onTestFinished } from 'vitest';
import * as Y from 'yjs';
import WebSocket from 'ws';
import { WebsocketProvider } from 'y-websocket';
import { entryFor, peerState, setPeers, status, testNode, type TestNode } from '../helpers/cluster.js';
import { appDoc, getDoc, getState, postUpdate } from '../helpers/docs.js';
import { RawSyncPeer, envelope, newFeed, rawEntry } from '../helpers/raw-peer.js';
import { waitUntil } from '../helpers/wait.js';
import { docHash, feedOf, vectorOf } from '../helpers/authority.js';
import { generateKeyPair } from '../../src/identity/keys.js';

/**
 * h holds two envelopes of r for `doc` (made by `first` and `second` on one
 * app doc of r's); then h revokes r with cutoff 1, so the second is dropped.
 * `beforeRevoke` runs while h still applies both (an app that copies them).
 */
async function droppedOnH(doc: string, first: (d: Y.Doc) => void, second: (d: Y.Doc) => void, beforeRevoke: (h: TestNode) => Promise<void>, seeSecond?: (update: Uint8Array) => void) {
  const h = await testNode('h');
  const r = await testNode('r');
  await setPeers(h, [entryFor(r, { dial: false })]);
  await setPeers(r, [entryFor(h)]);
  await waitUntil(async () => (await peerState(r, h)) === 'connected', { what: 'r connected to h' });
  const rApp = appDoc();
  await postUpdate(r, doc, rApp.edit(first));
  const secondUpdate = rApp.edit(second);
  seeSecond?.(secondUpdate);
  await postUpdate(r, doc, secondUpdate);
  const rFeed = feedOf(r);
  await waitUntil(async () => (await vectorOf(h, doc))[rFeed] === 2, { what: 'h holds r\'s two envelopes' });
  await beforeRevoke(h);
  await setPeers(h, [{ ...entryFor(r, { dial: false }), revoked: { at: new Date().toISOString(), cutoff: { [docHash(doc)]: { [rFeed]: 1 } } } }]);
  await waitUntil(async () => (await vectorOf(h, doc))[rFeed] === 1, { what: 'h dropped r\'s second envelope' });
  return { h, r, rApp, rFeed };
}

function provider(node: TestNode, doc: string, token: string, ydoc = new Y.Doc()) {
  const p = new WebsocketProvider(`ws://127.0.0.1:${node.daemon.apiAddress.port}/v1/yjs`, doc, ydoc, { WebSocketPolyfill: WebSocket as never, params: { token }, disableBc: true });
  onTestFinished(() => {
    p.destroy();
    ydoc.destroy();
  });
  return { p, ydoc };
}

/** An app's Y.Doc that copied the node's whole state (dropped content included, before the revocation). */
async function copyOf(node: TestNode, doc: string) {
  const app = appDoc();
  Y.applyUpdate(app.doc, await getState(node, doc));
  return app;
}

describe('laundering dropped content back through a local app', () => {
  it('a y-websocket app offering dropped content back: those parts refused (close 4409), its other edits accepted', async () => {
    let app!: ReturnType<typeof provider>;
    const { h, rApp } = await droppedOnH(
      'notes/w',
      (d) => d.getMap('m').set('keep', 1),
      (d) => d.getMap('m').set('drop', 'revoked content'),
      async (node) => {
        app = provider(node, 'notes/w', await node.token());
        await waitUntil(() => app.ydoc.getMap('m').get('drop') === 'revoked content', { what: 'the app holds the content about to be dropped' });
        app.p.disconnect();
      },
    );
    expect((await getDoc(h, 'notes/w')).body).toEqual({ m: { keep: 1 } });
    // Offline, the app makes its own edit; then it comes back with everything it holds.
    app.ydoc.getMap('m').set('own', 'mine');
    const closed = new Promise<number>((resolve) => app.p.on('connection-close', (e) => resolve((e as { code: number } | null)?.code ?? -1)));
    app.p.connect();
    expect(await closed).toBe(4409);
    await waitUntil(async () => ((await getDoc(h, 'notes/w')).body.m as Record<string, unknown>).own === 'mine', { what: 'the app\'s own edit accepted' });
    expect((await getDoc(h, 'notes/w')).body).toEqual({ m: { keep: 1, own: 'mine' } });
    // Nothing of r's dropped client range was signed by h.
    const ownFeedTop = (await vectorOf(h, 'notes/w'))[feedOf(h)];
    expect(ownFeedTop).toBe(1);
    expect(Y.decodeStateVector(Y.encodeStateVectorFromUpdate(await getState(h, 'notes/w'))).get(rApp.doc.clientID)).toBe(1);
    expect((await h.daemon.verify()).ok).toBe(true);
  });

  it('POST /updates offering dropped content back: 409 with the refused parts, the rest accepted', async () => {
    let copy!: Awaited<ReturnType<typeof copyOf>>;
    const { h, rApp } = await droppedOnH(
      'notes/p',
      (d) => d.getMap('m').set('keep', 1),
      (d) => d.getMap('m').set('drop', 'revoked content'),
      async (node) => void (copy = await copyOf(node, 'notes/p')),
    );
    copy.edit((d) => d.getMap('m').set('own', 'mine'));
    const res = await postUpdate(h, 'notes/p', Y.encodeStateAsUpdate(copy.doc));
    expect(res.status).toBe(409);
    expect(res.body.error).toMatchObject({ code: 'refused' });
    expect(res.body.refused).toEqual([expect.objectContaining({ client: rApp.doc.clientID, from: 1, to: 2, reason: 'revoked' })]);
    expect(res.body.vector).toEqual(await vectorOf(h, 'notes/p'));
    expect((await getDoc(h, 'notes/p')).body).toEqual({ m: { keep: 1, own: 'mine' } });
    // Offering it again is refused again; nothing new is signed.
    const again = await postUpdate(h, 'notes/p', Y.encodeStateAsUpdate(copy.doc));
    expect(again.status).toBe(409);
    expect((await vectorOf(h, 'notes/p'))[feedOf(h)]).toBe(1);
  });

  it('deletions that only the dropped envelope made are not signed when they come with its structs', async () => {
    let copy!: Awaited<ReturnType<typeof copyOf>>;
    const { h } = await droppedOnH(
      'notes/d',
      (d) => d.getText('t').insert(0, 'hello world'),
      (d) => {
        d.getText('t').delete(5, 6);
        d.getMap('m').set('drop', true);
      },
      async (node) => void (copy = await copyOf(node, 'notes/d')),
    );
    expect((await getDoc(h, 'notes/d')).body).toEqual({ t: 'hello world' });
    copy.edit((d) => d.getMap('m').set('own', 1));
    const res = await postUpdate(h, 'notes/d', Y.encodeStateAsUpdate(copy.doc));
    expect(res.status).toBe(409);
    expect((await getDoc(h, 'notes/d')).body).toEqual({ t: 'hello world', m: { own: 1 } });
  });

  it('an app struct that depends on dropped content is answered 409 and not signed', async () => {
    let copy!: Awaited<ReturnType<typeof copyOf>>;
    const { h } = await droppedOnH(
      'notes/x',
      (d) => d.getText('t').insert(0, 'abc'),
      (d) => d.getText('t').insert(3, 'XYZ'),
      async (node) => void (copy = await copyOf(node, 'notes/x')),
    );
    // Only the new struct: its left origin is r's dropped 'Z'.
    const delta = copy.edit((d) => d.getText('t').insert(6, '!'));
    const before = await vectorOf(h, 'notes/x');
    const res = await postUpdate(h, 'notes/x', delta);
    expect(res.status).toBe(409);
    expect(res.body.refused).toEqual([expect.objectContaining({ client: copy.doc.clientID, reason: 'revoked' })]);
    expect(await vectorOf(h, 'notes/x')).toEqual(before);
  });

  it('another origin\'s envelope that re-carries dropped content is applied, and an alarm names that origin', async () => {
    let dropped!: Uint8Array;
    const q = await generateKeyPair();
    const { h } = await droppedOnH(
      'notes/r',
      (d) => d.getMap('m').set('keep', 1),
      (d) => d.getMap('m').set('drop', 'revoked content'),
      async () => undefined,
      (update) => (dropped = update),
    );
    await setPeers(h, [...(h.daemon.peerManager.peers.peers as unknown as Record<string, unknown>[]), rawEntry('q', q)]);
    const peer = await RawSyncPeer.dial(h.url, q, { id: h.id, publicKey: h.publicKey });
    peer.offer(envelope(q, { doc: 'notes/r', feed: newFeed(), seq: 1, update: dropped }));
    await waitUntil(async () => ((await getDoc(h, 'notes/r')).body.m as Record<string, unknown>).drop === 'revoked content', { what: 'q\'s envelope applied on h' });
    const s = await status(h);
    expect((s.alarms as { doc: string; origins: string[] }[]).some((al) => al.doc === 'notes/r' && al.origins.includes(q.id)), 'an alarm naming q as the author of re-carried dropped content').toBe(true);
  });
});
