/**
 * Update bodies are bounded across requests (DESIGN.md §9): the local API
 * holds at most four bodies of `maxUpdateBytes` at once, counted from their
 * Content-Length (or as they stream in) until they are durable or refused.
 * Beyond it a request is answered 503 `busy` at once, whatever its token,
 * and the room comes back when the held requests end. Real daemon on
 * 127.0.0.1, port 0, with its own LevelDB folder.
 */
import { request, type ClientRequest } from 'node:http';
import { describe, expect, it, onTestFinished } from 'vitest';
import { testNode, type TestNode } from '../helpers/cluster.js';
import { appDoc } from '../helpers/docs.js';
import { http } from '../helpers/api.js';
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
  it('four announced bodies of maxUpdateBytes fill the budget: the next request gets 503 busy, and room comes back when they end', async () => {
    const node = await testNode('n', { maxUpdateBytes: MAX_UPDATE });
    const slow = await node.token(['write:**', 'read:**']);
    const other = await node.token(['write:**', 'read:**']);
    const held = Array.from({ length: 4 }, (_, i) => heldPost(node, slow, `held/${i}`, 100, MAX_UPDATE));
    await waitUntil(async () => (await metric(node, 'tessera_api_body_bytes')) === 4 * MAX_UPDATE, { what: 'the four bodies hold the budget' });

    const small = appDoc().edit((d) => d.getText('t').insert(0, 'small'));
    const refused = await post(node, other, 'fits/x', small);
    expect(refused.status).toBe(503);
    expect(JSON.parse(refused.text)).toMatchObject({ error: { code: 'busy' } });
    expect(await metric(node, 'tessera_api_bodies_refused_total')).toBe(1);

    for (const req of held) req.destroy();
    await waitUntil(async () => (await metric(node, 'tessera_api_body_bytes')) === 0, { what: 'the ended requests gave their bytes back' });
    const ok = await post(node, other, 'fits/x', small);
    expect(ok.status).toBe(200);
    expect(await metric(node, 'tessera_api_body_bytes')).toBe(0);
  });

  it('a body without Content-Length counts as it streams in', async () => {
    const node = await testNode('n', { maxUpdateBytes: MAX_UPDATE });
    const token = await node.token(['write:**']);
    const held = [0, 1, 2].map((i) => heldPost(node, token, `held/${i}`, 100, MAX_UPDATE));
    const chunked = heldPost(node, token, 'chunked/x', MAX_UPDATE - 10);
    await waitUntil(async () => (await metric(node, 'tessera_api_body_bytes')) === 4 * MAX_UPDATE - 10, { what: 'three announced bodies and most of a chunked one' });
    const refused = await post(node, token, 'fits/x', new Uint8Array(64));
    expect(refused.status).toBe(503);
    // Ten bytes are left: an empty update (two bytes) still fits.
    const fits = await post(node, token, 'fits/y', new Uint8Array([0, 0]));
    expect(fits.status).toBe(200);
    for (const req of [...held, chunked]) req.destroy();
    await waitUntil(async () => (await metric(node, 'tessera_api_body_bytes')) === 0, { what: 'all given back' });
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
