/**
 * DESIGN.md §9, everything has a bound: long-lived app connections too. An
 * app holding a valid token, or one caught in a reconnect loop, must not open
 * WebSockets and event streams without end (each holds memory and keeps its
 * document loaded). Beyond maxAppConnections in all, or
 * maxAppConnectionsPerToken for one token, a WebSocket is closed with 4503
 * (y-websocket retries it) and an event stream is answered 503
 * `too_many_connections` before it starts. Real nodes on 127.0.0.1, port 0,
 * with their own LevelDB folders; sockets are dropped by hand the way a
 * crashing app or a cut network drops them.
 */
import { request, type IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import WebSocket from 'ws';
import { testNode, type TestNode } from '../helpers/cluster.js';
import { outcome } from '../helpers/api.js';
import { waitUntil } from '../helpers/wait.js';
import { readKeyFile } from '../../src/identity/file.js';
import { issueApiToken } from '../../src/tokens/api-token.js';
import type { DocName } from '../../src/types.js';

const port = (n: TestNode) => n.daemon.apiAddress.port;

/** A fresh token of the node (each has its own `jti`). */
async function tokenOf(node: TestNode, scopes = ['read:**', 'write:**']): Promise<string> {
  return issueApiToken(await readKeyFile(join(node.dir, 'identity.json')), { scopes, ttlMs: 3_600_000 });
}

interface Held {
  /** `open` once the node's sync step 1 arrived (the node took the connection), or `close CODE`. */
  readonly outcome: string;
  readonly reason: string;
  readonly ws: WebSocket;
}

/** A y-websocket connection that stays open; resolves once the node has taken it or closed it. */
function openWs(node: TestNode, doc: string, token: string): Promise<Held> {
  const ws = new WebSocket(`ws://127.0.0.1:${port(node)}/v1/yjs/${doc}?token=${token}`);
  onTestFinished(() => ws.terminate());
  ws.on('error', () => undefined);
  return new Promise((resolve) => {
    ws.once('message', (m: Buffer) => resolve({ outcome: m[0] === 0 && m[1] === 0 ? 'open' : `open (first frame ${m.toString('hex')})`, reason: '', ws }));
    ws.once('close', (code, reason) => resolve({ outcome: `close ${code}`, reason: reason.toString(), ws }));
  });
}

interface Stream {
  /** `200` for a stream that started, or `STATUS CODE` once the error body is checked. */
  readonly outcome: string;
  readonly body: string;
  readonly end: () => void;
}

/** An event stream that stays open until `end`; a refusal resolves with its checked error body. */
function openStream(node: TestNode, doc: string, token: string): Promise<Stream> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: port(node), path: `/v1/docs/${encodeURIComponent(doc)}/events?token=${token}` }, (res: IncomingMessage) => {
      const end = () => void req.destroy();
      if (res.statusCode === 200) return resolve({ outcome: '200', body: '', end });
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ outcome: outcome({ status: res.statusCode!, headers: res.headers, text }), body: text, end }));
    });
    onTestFinished(() => void req.destroy());
    req.on('error', reject).end();
  });
}

/** A value of the node's /metrics. */
async function metric(node: TestNode, name: string): Promise<number> {
  const res = await fetch(`${node.api}/metrics`, { headers: { authorization: `Bearer ${await node.token(['read:**'])}` } });
  const line = (await res.text()).split('\n').find((l) => l.startsWith(`${name} `));
  return Number(line?.split(' ')[1]);
}

const openNow = (node: TestNode) => metric(node, 'tessera_app_connections');

/** Sends a request's head and drops the TCP connection at once, before the node can answer (a crashing app). */
function dropAfterSending(node: TestNode, head: string): Promise<void> {
  return new Promise((resolve) => {
    const socket: Socket = connect(port(node), '127.0.0.1', () => {
      socket.write(head);
      socket.destroy();
    });
    socket.on('error', () => undefined).once('close', () => resolve());
  });
}

const upgradeHead = (path: string) =>
  `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\n\r\n`;

describe('long-lived app connections are bounded', () => {
  it('one token holds at most maxAppConnectionsPerToken: beyond it a WebSocket closes 4503 before its document loads, an event stream is 503 too_many_connections; other tokens and plain requests go on', async () => {
    const node = await testNode('per-token', { maxAppConnections: 6, maxAppConnectionsPerToken: 3 });
    const greedy = await tokenOf(node);
    expect((await openWs(node, 'notes/a', greedy)).outcome).toBe('open');
    expect((await openWs(node, 'notes/b', greedy)).outcome).toBe('open');
    expect((await openStream(node, 'notes/a', greedy)).outcome).toBe('200');

    const loaded = node.daemon.docs.loadedCount;
    const refused = await openWs(node, 'notes/c', greedy);
    expect(refused.outcome).toBe('close 4503');
    expect(refused.reason).toMatch(/maxAppConnectionsPerToken/);
    expect(node.daemon.docs.loadedCount, 'a refused socket loads no document').toBe(loaded);
    const stream = await openStream(node, 'notes/a', greedy);
    expect(stream.outcome).toBe('503 too_many_connections');
    expect(stream.body).toMatch(/maxAppConnectionsPerToken/);

    // The same token's plain requests hold no slot; another token has its own share.
    const docs = await fetch(`${node.api}/v1/docs`, { headers: { authorization: `Bearer ${greedy}` } });
    expect(docs.status).toBe(200);
    const other = await tokenOf(node);
    expect((await openWs(node, 'notes/c', other)).outcome).toBe('open');
    expect((await openStream(node, 'notes/c', other)).outcome).toBe('200');
    expect(await openNow(node)).toBe(5);
    expect(await metric(node, 'tessera_app_connections_refused_total')).toBe(2);
  });

  it('in all no more than maxAppConnections, however many tokens share them', async () => {
    const node = await testNode('in-all', { maxAppConnections: 6, maxAppConnectionsPerToken: 2 });
    for (let i = 0; i < 3; i++) {
      const token = await tokenOf(node);
      expect((await openWs(node, `notes/${i}`, token)).outcome).toBe('open');
      expect((await openStream(node, `notes/${i}`, token)).outcome).toBe('200');
    }
    const late = await tokenOf(node);
    const refused = await openWs(node, 'notes/late', late);
    expect(refused.outcome).toBe('close 4503');
    expect(refused.reason).toMatch(/maxAppConnections\b/);
    expect((await openStream(node, 'notes/late', late)).outcome).toBe('503 too_many_connections');
    expect(node.daemon.docs.has('notes/late' as DocName)).toBe(false);
  });

  it('slots come back however a connection ends (close frame, dropped TCP, stream ended): a reconnect loop leaks none', async () => {
    const node = await testNode('loop', { maxAppConnections: 8, maxAppConnectionsPerToken: 3 });
    const token = await tokenOf(node);
    for (let round = 0; round < 10; round++) {
      const polite = await openWs(node, 'notes/loop', token);
      const rude = await openWs(node, 'notes/loop', token);
      const stream = await openStream(node, 'notes/loop', token);
      expect([polite.outcome, rude.outcome, stream.outcome]).toEqual(['open', 'open', '200']);
      polite.ws.close(1000);
      rude.ws.terminate();
      stream.end();
      await waitUntil(async () => (await openNow(node)) === 0, { what: `round ${round}: every slot given back` });
    }
    const held = await Promise.all([openWs(node, 'notes/loop', token), openWs(node, 'notes/loop', token), openStream(node, 'notes/loop', token)]);
    expect(held.map((h) => h.outcome)).toEqual(['open', 'open', '200']);
    expect((await openWs(node, 'notes/loop', token)).outcome).toBe('close 4503');
  });

  it('connections dropped while their token is checked hold no slot afterwards', async () => {
    const node = await testNode('dropped', { maxAppConnections: 8, maxAppConnectionsPerToken: 3 });
    const token = await tokenOf(node);
    for (let i = 0; i < 30; i++) {
      await dropAfterSending(node, `GET /v1/docs/notes%2Fdrop/events?token=${token} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
      await dropAfterSending(node, upgradeHead(`/v1/yjs/notes/drop?token=${token}`));
    }
    await waitUntil(async () => (await openNow(node)) === 0, { what: 'no slot held by a dropped connection' });
    const held = await Promise.all([openStream(node, 'notes/drop', token), openStream(node, 'notes/drop', token), openWs(node, 'notes/drop', token)]);
    expect(held.map((h) => h.outcome)).toEqual(['200', '200', 'open']);
    expect((await openStream(node, 'notes/drop', token)).outcome).toBe('503 too_many_connections');
  });
});
