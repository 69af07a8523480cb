/**
 * Update bodies are bounded across requests (DESIGN.md §9): the local API
 * holds at most four bodies of `maxUpdateBytes` at once, and half of that
 * for one token, counting what has arrived of each until it is durable or
 * refused. Beyond either, a request is answered 503 `busy` at once, and the
 * room comes back when the held requests end. Real daemon on 127.0.0.1,
 * port 0, with its own LevelDB folder.
 */
import { request, type ClientRequest } from 'node:http';
import { describe, expect, it, onTestFinished } from 'vitest';
import { testNode, type TestNode } from '../helpers/cluster.js';
import { appDoc } from '../helpers/docs.js';
import WebSocket from 'ws';
import { http, syncMessage } from '../helpers/api.js';
import { waitUntil } from '../helpers/wait.js';

const MAX_UPDATE = 65_536;

const portOf = (node: TestNode) => Number(new URL(node.api).port);

/** A POST of `declared` bytes (or chunked, without a length) that sends only `sent` of them and stays open. */
function heldPost(node: TestNode, token: string, doc: string, sent: number, declared?: number): ClientRequest {
  const headers: Record<string, string> = { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' };
  if (declared !== undefined) headers['content-length'] = String(declared);
  const req = request({ host: '127.0.0.1', port: portOf(node), method: 'POST', path: `/v1/docs/${encodeURIComponent(doc)}/updates`, headers });
  req.on('error', () => undefined);
  req.write(Buffer.alloc(sent));
  onTestFinished(() => void req.destroy());
  return req;
}

async function metric(node: TestNode, name: string): Promise<number> {
  const text = await (await fetch(`${node.api}/metrics`, { headers: { authorization: `Bearer ${await node.token()}` } })).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return Number(line?.split(' ')[1] ?? NaN);
}

const post = async (node: TestNode, token: string, doc: string, body: Uint8Array) =>
  http(portOf(node), { method: 'POST', path: `/v1/docs/${encodeURIComponent(doc)}/updates`, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' }, body });

describe('update bodies held at once are bounded', () => {
  it('four bodies of nearly maxUpdateBytes from two apps fill the budget: a third app gets 503 busy, and room comes back when they end', async () => {
    const node = await testNode('n', { maxUpdateBytes: MAX_UPDATE });
    const [one, two, third] = await Promise.all([node.token(['write:**']), node.token(['write:**']), node.token(['write:**'])]);
    // Each sends all but one byte of its body (one without Content-Length): the node holds what arrived, waiting for the rest.
    const held = [heldPost(node, one, 'held/0', MAX_UPDATE - 1, MAX_UPDATE), heldPost(node, one, 'held/1', MAX_UPDATE - 1), heldPost(node, two, 'held/2', MAX_UPDATE - 1, MAX_UPDATE), heldPost(node, two, 'held/3', MAX_UPDATE - 1, MAX_UPDATE)];
    await waitUntil(async () => (await metric(node, 'tessera_api_body_bytes')) === 4 * (MAX_UPDATE - 1), { what: 'the four bodies hold the budget' });

    const refused = await post(node, third, 'fits/x', new Uint8Array(64));
    expect(refused.status).toBe(503);
    expect(JSON.parse(refused.text)).toMatchObject({ error: { code: 'busy' } });
    expect(await metric(node, 'tessera_api_bodies_refused_total')).toBe(1);
    // Four bytes are left: an empty update (two bytes) still fits.
    expect((await post(node, third, 'fits/y', new Uint8Array([0, 0]))).status).toBe(200);

    for (const req of held) req.destroy();
    await waitUntil(async () => (await metric(node, 'tessera_api_body_bytes')) === 0, { what: 'the ended requests gave their bytes back' });
    expect((await post(node, third, 'fits/x', appDoc().edit((d) => d.getText('t').insert(0, 'small')))).status).toBe(200);
  });

  it('one token holds at most half of the budget; other apps keep writing', async () => {
    const node = await testNode('n', { maxUpdateBytes: MAX_UPDATE });
    const [hog, other] = await Promise.all([node.token(['write:**']), node.token(['write:**'])]);
    // Bodies announced and never sent hold nothing.
    const announced = [0, 1, 2, 3].map((i) => heldPost(node, hog, `announced/${i}`, 0, MAX_UPDATE));
    const held = [0, 1].map((i) => heldPost(node, hog, `held/${i}`, MAX_UPDATE - 1, MAX_UPDATE));
    await waitUntil(async () => (await metric(node, 'tessera_api_body_bytes')) === 2 * (MAX_UPDATE - 1), { what: 'two bodies of one token held' });
    expect((await post(node, hog, 'more/x', new Uint8Array(64))).status).toBe(503);
    expect((await post(node, other, 'notes/x', appDoc().edit((d) => d.getText('t').insert(0, 'x')))).status).toBe(200);
    for (const req of [...announced, ...held]) req.destroy();
    await waitUntil(async () => (await metric(node, 'tessera_api_body_bytes')) === 0, { what: 'all given back' });
  });

  it('a y-websocket write counts in the same budget: beyond it the socket is closed 4503 (retry) and nothing is written', async () => {
    const node = await testNode('n', { maxUpdateBytes: MAX_UPDATE });
    const [one, two, app] = await Promise.all([node.token(['write:**']), node.token(['write:**']), node.token(['write:**', 'read:**'])]);
    const held = [heldPost(node, one, 'held/0', MAX_UPDATE - 1, MAX_UPDATE), heldPost(node, one, 'held/1', MAX_UPDATE - 1, MAX_UPDATE), heldPost(node, two, 'held/2', MAX_UPDATE - 1, MAX_UPDATE), heldPost(node, two, 'held/3', MAX_UPDATE - 1, MAX_UPDATE)];
    await waitUntil(async () => (await metric(node, 'tessera_api_body_bytes')) === 4 * (MAX_UPDATE - 1), { what: 'the four bodies hold the budget' });
    const ws = new WebSocket(`ws://127.0.0.1:${portOf(node)}/v1/yjs/ws/x?token=${app}`);
    onTestFinished(() => ws.terminate());
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    await new Promise((resolve) => ws.once('open', resolve));
    ws.send(syncMessage(2, appDoc().edit((d) => d.getText('t').insert(0, 'typed'))));
    expect(await closed).toBe(4503);
    expect(await metric(node, 'tessera_api_bodies_refused_total')).toBe(1);
    for (const req of held) req.destroy();
    await waitUntil(async () => (await metric(node, 'tessera_api_body_bytes')) === 0, { what: 'all given back' });
    expect(node.daemon.docs.has('ws/x' as never)).toBe(false);
  });

  it('concurrent verifications share one pass over the store', async () => {
    const node = await testNode('n');
    const [a, b] = [node.daemon.verify(), node.daemon.verify()];
    expect(a).toBe(b);
    expect((await a).ok).toBe(true);
    const c = node.daemon.verify();
    expect(c).not.toBe(a);
    await c;
  });
});
