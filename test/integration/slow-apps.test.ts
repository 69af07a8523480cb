/**
 * DESIGN.md §9: everything has a bound, queued bytes included. An app that
 * stops reading (a frozen tab, a stuck process) must not make the node buffer
 * the document's updates for it without end: once more than maxQueuedBytes
 * wait unsent on its WebSocket or event stream, the node drops that
 * connection alone, and the other apps on the document go on. An app that
 * vanished without closing (answers no ping) is cut too.
 */
import type { Socket } from 'node:net';
import { request } from 'node:http';
import { describe, expect, it, onTestFinished } from 'vitest';
import WebSocket from 'ws';
import * as Y from 'yjs';
import { randomBytes } from 'node:crypto';
import { setPeers, testNode } from '../helpers/cluster.js';
import { generateKeyPair } from '../../src/identity/keys.js';
import { envelope, newFeed } from '../helpers/raw-peer.js';
import type { NodeId } from '../../src/types.js';
import { appDoc, postUpdate } from '../helpers/docs.js';
import { waitUntil } from '../helpers/wait.js';

const LIMIT = 64 * 1024;

describe('an app that stops reading', () => {
  it('on the WebSocket route is dropped once maxQueuedBytes wait for it; a reading app on the same document gets everything', async () => {
    const node = await testNode('slow-ws', { maxQueuedBytes: LIMIT, durability: 'relaxed' });
    onTestFinished(() => node.daemon.stop());
    const base = `${node.api.replace('http', 'ws')}/v1/yjs/slow/ws?token=${await node.token()}`;
    const open = async () => {
      const ws = new WebSocket(base);
      onTestFinished(() => ws.terminate());
      await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
      return ws;
    };
    const stuck = await open();
    const stuckSocket = (stuck as unknown as { _socket: Socket })._socket;
    stuckSocket.pause();
    let stuckBytes = 0;
    stuck.on('message', (m: Buffer) => (stuckBytes += m.byteLength));
    const closed = new Promise<number>((resolve) => stuck.once('close', resolve));

    const reader = await open();
    let readerBytes = 0;
    reader.on('message', (m: Buffer) => (readerBytes += m.byteLength));

    const app = appDoc();
    const chunk = 'x'.repeat(32 * 1024);
    let sent = 0;
    for (let i = 0; i < 128; i++) {
      const update = app.edit((d) => d.getText('t').insert(0, chunk));
      expect((await postUpdate(node, 'slow/ws', update)).status).toBe(200);
      sent += update.byteLength;
    }
    await waitUntil(() => node.lines.some((l) => String(l.msg).includes('too slow') && l.doc === 'slow/ws'), { what: 'the slow app dropped' });
    await waitUntil(() => readerBytes >= sent, { what: 'the reading app to get every update' });

    stuckSocket.resume();
    expect(await closed).toBe(1006);
    expect(stuckBytes).toBeLessThan(sent);
    expect(reader.readyState).toBe(WebSocket.OPEN);
  });

  it('on the event stream is ended once maxQueuedBytes wait for it', async () => {
    const node = await testNode('slow-sse', { maxQueuedBytes: LIMIT, durability: 'relaxed' });
    onTestFinished(() => node.daemon.stop());
    const token = await node.token();
    // A document written through 1000 feeds: each change event carries its vector, about 70 KB, so a
    // reader that stops reading fills the socket's buffers after a few dozen changes.
    const origin = await generateKeyPair();
    await setPeers(node, [{ name: 'origin', id: origin.id, publicKey: origin.publicJwk, read: ['**'], write: ['**'] }]);
    const feeds = Array.from({ length: 1000 }, (_, i) => {
      const writer = new Y.Doc();
      writer.getMap('m').set(`k${i}`, i);
      return envelope(origin, { doc: 'slow/sse', feed: newFeed(), seq: 1, update: Y.encodeStateAsUpdate(writer) });
    });
    expect((await node.daemon.docs.receive(origin.id as NodeId, feeds)).accepted).toBe(1000);

    let received = 0;
    let opened!: () => void;
    const open = new Promise<void>((resolve) => (opened = resolve));
    const ended = new Promise<void>((resolve, reject) => {
      const req = request(`${node.api}/v1/docs/slow%2Fsse/events?token=${token}`, (res) => {
        expect(res.statusCode).toBe(200);
        opened();
        res.pause();
        res.on('data', (d: Buffer) => (received += d.byteLength));
        res.on('end', resolve).on('error', resolve).on('close', resolve);
        // Read again only once the node has given up on this stream.
        void waitUntil(() => node.lines.some((l) => String(l.msg).includes('too slow') && l.doc === 'slow/sse'), { what: 'the slow stream dropped' }).then(() => res.resume(), reject);
      });
      req.on('error', reject).end();
      onTestFinished(() => {
        req.destroy();
      });
    });
    await open;

    let changes = 0;
    const app = appDoc();
    while (!node.lines.some((l) => String(l.msg).includes('too slow') && l.doc === 'slow/sse')) {
      expect((await postUpdate(node, 'slow/sse', app.edit((d) => d.getText('t').insert(0, 'y')), token)).status).toBe(200);
      changes++;
      expect(changes).toBeLessThan(2000);
    }
    await ended;
    const eventBytes = 70 * 1000;
    expect(received).toBeLessThan(changes * eventBytes);
  });

  it('that vanished without closing (answers no ping) is cut within two heartbeats; an app that answers stays', async () => {
    const node = await testNode('vanished', { heartbeatInterval: '1s' });
    onTestFinished(() => node.daemon.stop());
    const path = `/v1/yjs/slow/gone?token=${await node.token()}`;
    // A socket upgraded by hand that never answers anything, as from a machine that went away.
    const gone = await new Promise<Socket>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: Number(new URL(node.api).port), path, headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': randomBytes(16).toString('base64') } });
      req.on('upgrade', (_res, socket) => resolve(socket as Socket)).on('error', reject).end();
    });
    onTestFinished(() => void gone.destroy());
    gone.on('data', () => undefined);
    const goneClosed = new Promise<void>((resolve) => gone.once('close', () => resolve()));
    const live = new WebSocket(`${node.api.replace('http', 'ws')}${path}`);
    onTestFinished(() => live.terminate());
    let pings = 0;
    live.on('ping', () => pings++);
    await new Promise((resolve, reject) => live.once('open', resolve).once('error', reject));
    await goneClosed;
    expect(pings).toBeGreaterThan(0);
    expect(live.readyState).toBe(WebSocket.OPEN);
  });
});
