/**
 * Contract (DESIGN.md §7): the order of refusals (421 before everything, then
 * 401, 400 bad name, 403, 404, 413, 400 bad body, 409), the Host check, the
 * doc-name rules on the raw path, and where `?token=` is accepted.
 * Requests go out on raw sockets so that nothing normalises the path.
 */
import { describe, expect, it, onTestFinished } from 'vitest';
import WebSocket from 'ws';
import * as Y from 'yjs';
import * as encoding from 'lib0/encoding';
import { http, outcome, rawWs, wsOutcome } from '../helpers/api.js';
import { randomBytes } from 'node:crypto';
import { testNode, type TestNode } from '../helpers/cluster.js';
import { appDoc, getDoc, postUpdate } from '../helpers/docs.js';



const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const port = (node: TestNode) => node.daemon.apiAddress.port;

/** Every HTTP doc route for a raw (already encoded) name segment. */
async function docRoutes(node: TestNode, rawName: string, headers: Record<string, string>, body: Uint8Array = appDoc().edit((d) => d.getMap('m').set('k', 1))): Promise<Record<string, string>> {
  const p = port(node);
  return {
    doc: outcome(await http(p, { path: `/v1/docs/${rawName}`, headers })),
    state: outcome(await http(p, { path: `/v1/docs/${rawName}/state`, headers })),
    authors: outcome(await http(p, { path: `/v1/docs/${rawName}/authors`, headers })),
    events: outcome(await http(p, { path: `/v1/docs/${rawName}/events`, headers })),
    updates: outcome(await http(p, { method: 'POST', path: `/v1/docs/${rawName}/updates`, headers: { ...headers, 'content-type': 'application/octet-stream' }, body })),
  };
}

const all = (answer: string) => ({ doc: answer, state: answer, authors: answer, events: answer, updates: answer });

describe('order of refusals (DESIGN.md §7)', () => {
  it('421 for a foreign Host comes before the token, the name and the route', async () => {
    const node = await testNode('order');
    expect(await docRoutes(node, 'a%2F%2Fb', { host: 'evil.example' })).toEqual(all('421 misdirected'));
    expect(outcome(await http(port(node), { path: '/no/such/route', headers: { host: 'evil.example' } }))).toBe('421 misdirected');
    expect(wsOutcome(await rawWs(port(node), '/v1/yjs/a//b', { host: 'evil.example' }))).toBe('http 421');
  });

  it('a bad name with no token is 401 (4401 on the WebSocket)', async () => {
    const node = await testNode('order');
    expect(await docRoutes(node, 'a%2F%2Fb', {})).toEqual(all('401 unauthorized'));
    expect(await docRoutes(node, '..%2Fetc', bearer('garbage'))).toEqual(all('401 unauthorized'));
    expect(wsOutcome(await rawWs(port(node), '/v1/yjs/a//b'))).toBe('close 4401');
    expect(wsOutcome(await rawWs(port(node), '/v1/yjs/a%00b?token=garbage'))).toBe('close 4401');
  });

  it('a bad name with a valid token is 400 even when the scope would not cover it (4400 on the WebSocket)', async () => {
    const node = await testNode('order');
    const narrow = await node.token(['read:elsewhere/**']);
    expect(await docRoutes(node, 'a%2F%2Fb', bearer(narrow))).toEqual(all('400 bad_name'));
    expect(wsOutcome(await rawWs(port(node), `/v1/yjs/a//b?token=${narrow}`))).toBe('close 4400');
  });

  it('a document the scope does not cover is 403, whether or not it exists (4403 on the WebSocket)', async () => {
    const node = await testNode('order');
    expect((await postUpdate(node, 'private/seen', appDoc().edit((d) => d.getText('t').insert(0, 'x')))).status).toBe(200);
    const narrow = await node.token(['read:notes/**', 'write:notes/**']);
    for (const doc of ['private/seen', 'private/never']) {
      expect(await docRoutes(node, encodeURIComponent(doc), bearer(narrow)), doc).toEqual(all('403 forbidden'));
      expect(wsOutcome(await rawWs(port(node), `/v1/yjs/${doc}?token=${narrow}`)), doc).toBe('close 4403');
    }
  });

  it('a document never seen: 404 for GETs; an SSE stream and a WebSocket on it are accepted; it exists from its first envelope', async () => {
    const node = await testNode('order');
    const token = await node.token();
    const got = await docRoutes(node, 'notes%2Fnever', bearer(token));
    expect({ doc: got.doc, state: got.state, authors: got.authors, events: got.events }).toEqual({ doc: '404 not_found', state: '404 not_found', authors: '404 not_found', events: '200' });
    // A POST to a document never seen is not a 404: it creates the document.
    expect(got.updates).toBe('200');
    expect((await getDoc(node, 'notes/never')).status).toBe(200);

    // A WebSocket and an SSE stream on a document never seen are accepted; neither creates it.
    expect(wsOutcome(await rawWs(port(node), `/v1/yjs/notes/later?token=${token}`))).toBe('open');
    expect((await getDoc(node, 'notes/later')).status).toBe(404);
    const list = (await (await fetch(`${node.api}/v1/docs`, { headers: bearer(token) })).json()) as { docs: { name: string }[] };
    expect(list.docs.map((d) => d.name)).not.toContain('notes/later');
    const abort = new AbortController();
    onTestFinished(() => abort.abort());
    const sse = await fetch(`${node.api}/v1/docs/notes%2Flater/events`, { headers: bearer(token), signal: abort.signal });
    expect(sse.status).toBe(200);
    expect(sse.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const reader = sse.body!.getReader();
    expect((await postUpdate(node, 'notes/later', appDoc().edit((d) => d.getText('t').insert(0, 'first')))).status).toBe(200);
    let text = '';
    while (!text.includes('event: change')) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`stream ended before the change: ${text}`);
      text += new TextDecoder().decode(value);
    }
    expect((await getDoc(node, 'notes/later')).body).toEqual({ t: 'first' });
  });

  it('POST: 401, then 400 (name), then 403, then 413, then 400 (body); a document never seen is no 404 for a POST', async () => {
    const node = await testNode('order', { maxUpdateBytes: 1000, maxFrameBytes: 100_000 });
    const p = port(node);
    const huge = randomBytes(5000);
    const garbage = Buffer.from('certainly not a Yjs update');
    const post = async (name: string, headers: Record<string, string>, body: Uint8Array) =>
      outcome(await http(p, { method: 'POST', path: `/v1/docs/${name}/updates`, headers: { ...headers, 'content-type': 'application/octet-stream' }, body }));
    const full = await node.token();
    const readOnly = await node.token(['read:**']);
    expect(await post('a%2F%2Fb', {}, huge)).toBe('401 unauthorized');
    expect(await post('a%2F%2Fb', bearer(readOnly), huge)).toBe('400 bad_name');
    expect(await post('notes%2Fx', bearer(readOnly), huge)).toBe('403 forbidden');
    expect(await post('notes%2Fx', bearer(full), huge)).toBe('413 too_large');
    expect(await post('notes%2Fx', bearer(full), garbage)).toBe('400 bad_update');
    expect((await getDoc(node, 'notes/x')).status).toBe(404);
    expect(await post('notes%2Fx', bearer(full), appDoc().edit((d) => d.getText('t').insert(0, 'ok')))).toBe('200');
  });

  it('409: content refused by the equivocation check; the rest of the update is accepted and the body says what was refused', async () => {
    const node = await testNode('order');
    const first = appDoc(777);
    expect((await postUpdate(node, 'notes/eq', first.edit((d) => d.getText('t').insert(0, 'alpha')))).status).toBe(200);
    // Same client id and clocks, other content: an equivocation; plus a struct of another client that is fine.
    const liar = appDoc(777).edit((d) => d.getText('t').insert(0, 'omega'));
    const honest = appDoc(888).edit((d) => d.getMap('m').set('k', 'kept'));
    const r = await postUpdate(node, 'notes/eq', Y.mergeUpdates([liar, honest]));
    expect(r.status).toBe(409);
    expect(r.body.error).toEqual({ code: expect.any(String), message: expect.any(String) });
    expect(Object.keys(r.body.error as object).sort()).toEqual(['code', 'message']);
    expect(Array.isArray(r.body.refused) && (r.body.refused as unknown[]).length).toBeGreaterThan(0);
    expect((await getDoc(node, 'notes/eq')).body).toEqual({ t: 'alpha', m: { k: 'kept' } });
  });

  it('409 on the WebSocket: the rest is applied and the socket is closed with 4409', async () => {
    const node = await testNode('order');
    expect((await postUpdate(node, 'notes/eq', appDoc(777).edit((d) => d.getText('t').insert(0, 'alpha')))).status).toBe(200);
    const ws = new WebSocket(`ws://127.0.0.1:${port(node)}/v1/yjs/notes/eq?token=${await node.token()}`);
    onTestFinished(() => ws.terminate());
    const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
    await new Promise<void>((resolve, reject) => {
      ws.once('message', () => resolve());
      ws.once('error', reject);
    });
    const update = Y.mergeUpdates([appDoc(777).edit((d) => d.getText('t').insert(0, 'omega')), appDoc(888).edit((d) => d.getMap('m').set('k', 'kept'))]);
    const e = encoding.createEncoder();
    encoding.writeVarUint(e, 0); // messageSync
    encoding.writeVarUint(e, 2); // syncUpdate
    encoding.writeVarUint8Array(e, update);
    ws.send(encoding.toUint8Array(e));
    expect(await closed).toBe(4409);
    expect((await getDoc(node, 'notes/eq')).body).toEqual({ t: 'alpha', m: { k: 'kept' } });
  });

  it('an unknown route is 404 with the error body, after the token check', async () => {
    const node = await testNode('order');
    expect(outcome(await http(port(node), { path: '/v1/nothing', headers: bearer(await node.token()) }))).toBe('404 not_found');
    expect(outcome(await http(port(node), { path: '/v1/nothing' }))).toBe('401 unauthorized');
  });
});

describe('?token= (DESIGN.md §7: on the WebSocket and SSE routes)', () => {
  it('is accepted on the SSE and WebSocket routes', async () => {
    const node = await testNode('query');
    const token = await node.token();
    expect(outcome(await http(port(node), { path: `/v1/docs/notes%2Fq/events?token=${token}` }))).toBe('200');
    expect(wsOutcome(await rawWs(port(node), `/v1/yjs/notes/q?token=${token}`))).toBe('open');
  });

  it('is not a way to authenticate on the other routes (401)', async () => {
    const node = await testNode('query');
    const token = await node.token();
    expect((await postUpdate(node, 'notes/q', appDoc().edit((d) => d.getText('t').insert(0, 'x')))).status).toBe(200);
    const got: Record<string, string> = {};
    for (const path of ['/v1/status', '/v1/docs', '/v1/docs/notes%2Fq', '/v1/docs/notes%2Fq/state', '/v1/docs/notes%2Fq/authors', '/v1/verify', '/metrics']) {
      got[`GET ${path}`] = outcome(await http(port(node), { path: `${path}?token=${token}` }));
    }
    got['POST updates'] = outcome(
      await http(port(node), { method: 'POST', path: `/v1/docs/notes%2Fq/updates?token=${token}`, headers: { 'content-type': 'application/octet-stream' }, body: appDoc().edit((d) => d.getMap('m').set('k', 1)) }),
    );
    expect(got).toEqual(Object.fromEntries(Object.keys(got).map((k) => [k, '401 unauthorized'])));
  });
});

describe('Host header (DESIGN.md §7: 421 before everything)', () => {
  it('a non-loopback Host gets 421 on every route, /healthz included, and on a WebSocket upgrade', async () => {
    const node = await testNode('host');
    const p = port(node);
    const token = await node.token();
    const routes: [string, string][] = [
      ['GET', '/healthz'],
      ['GET', '/v1/status'],
      ['GET', '/v1/docs'],
      ['GET', '/v1/docs/notes%2Fh'],
      ['GET', '/v1/docs/notes%2Fh/state'],
      ['GET', '/v1/docs/notes%2Fh/authors'],
      ['GET', '/v1/docs/notes%2Fh/events'],
      ['POST', '/v1/docs/notes%2Fh/updates'],
      ['GET', '/v1/verify'],
      ['GET', '/metrics'],
      ['GET', '/no/such/route'],
    ];
    for (const host of ['evil.example', `evil.example:${p}`, `127.0.0.1.evil.example:${p}`, `localhost.evil.example:${p}`, `10.1.2.3:${p}`, `[::2]:${p}`]) {
      for (const [method, path] of routes) {
        const a = await http(p, { method, path, headers: { host, ...bearer(token) }, ...(method === 'POST' ? { body: appDoc().edit((d) => d.getMap('m').set('k', 1)) } : {}) });
        expect(outcome(a), `${host} ${method} ${path}`).toBe('421 misdirected');
      }
      const ws = await rawWs(p, `/v1/yjs/notes/h?token=${token}`, { host });
      expect(wsOutcome(ws), `${host} WS`).toBe('http 421');
      expect(ws.kind === 'http' && JSON.parse(ws.body)).toEqual({ error: { code: expect.any(String), message: expect.any(String) } });
    }
    // Nothing was written through the refused POSTs.
    expect((await getDoc(node, 'notes/h')).status).toBe(404);
  });

  it('localhost:PORT, 127.0.0.1:PORT and [::1]:PORT are accepted, on HTTP routes and on the WebSocket', async () => {
    const node = await testNode('host');
    const p = port(node);
    const token = await node.token();
    for (const host of [`localhost:${p}`, `127.0.0.1:${p}`, `[::1]:${p}`]) {
      expect(outcome(await http(p, { path: '/healthz', headers: { host } })), host).toBe('200');
      expect(outcome(await http(p, { path: '/v1/status', headers: { host, ...bearer(token) } })), host).toBe('200');
      expect(outcome(await http(p, { path: '/v1/docs', headers: { host, ...bearer(token) } })), host).toBe('200');
      expect(outcome(await http(p, { method: 'POST', path: '/v1/docs/notes%2Fh/updates', headers: { host, ...bearer(token) }, body: appDoc().edit((d) => d.getMap('m').set(host, 1)) })), host).toBe('200');
      expect(wsOutcome(await rawWs(p, `/v1/yjs/notes/h?token=${token}`, { host })), host).toBe('open');
    }
  });
});

describe('document names (DESIGN.md §7)', () => {
  const BAD: [string, string][] = [
    ['".." segment (encoded slash)', 'notes%2F..'],
    ['"." segment (encoded slash)', 'notes%2F.'],
    ['empty segment', 'a%2F%2Fb'],
    ['leading slash', '%2Fa'],
    ['trailing slash', 'a%2F'],
    ['NUL', 'a%00b'],
    ['201 characters', 'x'.repeat(201)],
    ['201 characters in segments', `${'x'.repeat(100)}%2F${'y'.repeat(100)}`],
    ['space', 'a%20b'],
    ['non-ASCII', 'caf%C3%A9'],
    ['colon', 'a%3Ab'],
    ['star', 'a*b'],
    ['plus', 'a%2Bb'],
    ['tilde', 'a~b'],
    ['bad percent-encoding', '%ZZ'],
    ['".." then more, encoded', '..%2Fsecret'],
  ];

  for (const [label, raw] of BAD) {
    it(`${label} (${raw.length > 40 ? raw.slice(0, 20) + '…' : raw}): 400 bad_name on every doc route, with the reason`, async () => {
      const node = await testNode('names');
      const token = await node.token();
      expect(await docRoutes(node, raw, bearer(token))).toEqual(all('400 bad_name'));
      const a = await http(port(node), { path: `/v1/docs/${raw}`, headers: bearer(token) });
      expect((JSON.parse(a.text) as { error: { message: string } }).error.message).toMatch(/name|encoding/i);
    });
  }

  it('200 characters and every allowed character are a valid name', async () => {
    const node = await testNode('names');
    for (const name of ['x'.repeat(200), `${'x'.repeat(99)}/${'y'.repeat(100)}`, 'AZaz09._-/seg.ment_2-x']) {
      expect((await postUpdate(node, name, appDoc().edit((d) => d.getText('t').insert(0, 'ok')))).status, name).toBe(200);
      expect((await getDoc(node, name)).body, name).toEqual({ t: 'ok' });
    }
  });

  it('bad names on the WebSocket route close with 4400', async () => {
    const node = await testNode('names');
    const token = await node.token();
    const got: Record<string, string> = {};
    for (const raw of ['a%00b', 'x'.repeat(201), 'a%20b', 'a/', '', 'caf%C3%A9', '%ZZ']) {
      got[raw] = wsOutcome(await rawWs(port(node), `/v1/yjs/${raw}?token=${token}`));
    }
    expect(got).toEqual(Object.fromEntries(Object.keys(got).map((k) => [k, 'close 4400'])));
  });

  it('a percent-encoded name with slashes (notes%2Fa) works on every HTTP route and is the same document as the WebSocket room notes/a', async () => {
    const node = await testNode('names');
    const token = await node.token();
    const p = port(node);
    expect((await postUpdate(node, 'notes/a', appDoc().edit((d) => d.getText('t').insert(0, 'slashes')))).status).toBe(200);
    const doc = await http(p, { path: '/v1/docs/notes%2Fa', headers: bearer(token) });
    expect(doc.status).toBe(200);
    expect(JSON.parse(doc.text)).toEqual({ t: 'slashes' });
    const state = await fetch(`${node.api}/v1/docs/notes%2Fa/state`, { headers: bearer(token) });
    expect(state.status).toBe(200);
    const copy = new Y.Doc();
    Y.applyUpdate(copy, new Uint8Array(await state.arrayBuffer()));
    expect(copy.getText('t').toString()).toBe('slashes');
    expect(outcome(await http(p, { path: '/v1/docs/notes%2Fa/authors', headers: bearer(token) }))).toBe('200');
    expect(outcome(await http(p, { path: '/v1/docs/notes%2Fa/events', headers: bearer(token) }))).toBe('200');
    // Lower-case escapes are the same name.
    expect(JSON.parse((await http(p, { path: '/v1/docs/notes%2fa', headers: bearer(token) })).text)).toEqual({ t: 'slashes' });
    const list = JSON.parse((await http(p, { path: '/v1/docs', headers: bearer(token) })).text) as { docs: { name: string }[] };
    expect(list.docs.map((d) => d.name)).toEqual(['notes/a']);
    // The WebSocket room is the raw rest of the path, slashes included: its sync step 1 carries the state vector.
    const ws = await rawWs(p, `/v1/yjs/notes/a?token=${token}`);
    expect(ws.kind).toBe('open');
    expect(ws.kind === 'open' && ws.first.length).toBeGreaterThan(3);
  });

  it('dot segments and backslashes in the raw HTTP path are bad names, not resolved away', async () => {
    const node = await testNode('names');
    const token = await node.token();
    // Documents that a normalising router would silently serve instead.
    for (const name of ['b', 'state', 'a/b']) expect((await postUpdate(node, name, appDoc().edit((d) => d.getText('t').insert(0, name)))).status).toBe(200);
    const got: Record<string, string> = {};
    for (const path of ['/v1/docs/..', '/v1/docs/%2E%2E', '/v1/docs/%2e', '/v1/docs/%2E/state', '/v1/docs/a%5Cb', '/v1/docs/a\\b', '/v1/docs/a/../b']) {
      got[path] = outcome(await http(port(node), { path, headers: bearer(token) }));
    }
    expect(got).toEqual({
      '/v1/docs/..': '400 bad_name',
      '/v1/docs/%2E%2E': '400 bad_name',
      '/v1/docs/%2e': '400 bad_name',
      '/v1/docs/%2E/state': '400 bad_name',
      '/v1/docs/a%5Cb': '400 bad_name',
      '/v1/docs/a\\b': '400 bad_name',
      // The raw path does not match the doc route at all: no route, and certainly not document "b".
      '/v1/docs/a/../b': '404 not_found',
    });
  });

  it('dot segments and backslashes on the WebSocket route are part of the (bad) name: 4400', async () => {
    const node = await testNode('names');
    const token = await node.token();
    for (const name of ['b', 'notes/a', 'a/b']) expect((await postUpdate(node, name, appDoc().edit((d) => d.getText('t').insert(0, name)))).status).toBe(200);
    const got: Record<string, string> = {};
    for (const raw of ['a/../b', '..', 'notes/./a', 'a\\b', '%2E%2E']) got[raw] = wsOutcome(await rawWs(port(node), `/v1/yjs/${raw}?token=${token}`));
    expect(got).toEqual({ 'a/../b': 'close 4400', '..': 'close 4400', 'notes/./a': 'close 4400', 'a\\b': 'close 4400', '%2E%2E': 'close 4400' });
  });
});
