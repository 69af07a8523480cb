/**
 * The contract, black-box: DESIGN.md §7 (local API) and §9 (bad input to the API
 * gets a 4xx with the JSON error body), on statements the existing suite
 * does not pin down. Nodes run in this process on loopback, port 0.
 */
import { describe, expect, it, onTestFinished } from 'vitest';
import { connect } from 'node:net';
import WebSocket from 'ws';
import * as Y from 'yjs';
import { http, rawWs, syncMessage, wsOutcome } from '../helpers/api.js';
import { linkPair, testNode, type TestNode } from '../helpers/cluster.js';
import { getDoc, postUpdate } from '../helpers/docs.js';
import { waitUntil } from '../helpers/wait.js';
import { issueApiToken } from '../../src/tokens/api-token.js';
import { readKeyFile } from '../../src/identity/file.js';
import { join } from 'node:path';
import { generateKeyPair } from '../../src/identity/keys.js';

const port = (n: TestNode) => n.daemon.apiAddress.port;

/** Writes raw bytes to the API and resolves with whatever comes back before the server closes (or 2 s). */
function raw(p: number, bytes: string | Buffer): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(p, '127.0.0.1');
    let out = '';
    const done = () => resolve(out);
    s.on('data', (d) => (out += d.toString('latin1')));
    s.on('close', done);
    s.on('error', done);
    setTimeout(() => {
      s.destroy();
      done();
    }, 2000).unref();
    s.write(bytes);
  });
}

function statusAndBody(resp: string): { status: number; body: unknown } | undefined {
  const m = /^HTTP\/1\.1 (\d{3})/.exec(resp);
  if (!m) return undefined;
  const text = resp.slice(resp.indexOf('\r\n\r\n') + 4);
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: Number(m[1]), body };
}

const errorBody = { error: { code: expect.any(String), message: expect.any(String) } };

describe('§9 bad input to the API gets a 4xx with the JSON error body', () => {
  it('request headers larger than Node accepts (431, not a reset)', async () => {
    const node = await testNode('n');
    const big = 'x'.repeat(20_000);
    const resp = await raw(port(node), `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${big}\r\n\r\n`);
    expect(statusAndBody(resp), `raw answer: ${JSON.stringify(resp.slice(0, 120))}`).toEqual({ status: expect.any(Number), body: errorBody });
  });

  it('a request line that is not HTTP (400, not a reset)', async () => {
    const node = await testNode('n');
    const resp = await raw(port(node), 'GARBAGE\r\n\r\n');
    expect(statusAndBody(resp), `raw answer: ${JSON.stringify(resp.slice(0, 120))}`).toEqual({ status: 400, body: errorBody });
  });

  it('bad input after a response on a kept-alive connection closes it, with no status line written into what was sent', async () => {
    const node = await testNode('n');
    const resp = await raw(port(node), 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGARBAGE\r\n\r\n');
    expect(resp.match(/HTTP\/1\.1 \d{3}/g)).toEqual(['HTTP/1.1 200']);
  });
});

describe('§7 WebSocket refusals accept the upgrade and close with a 44xx code', () => {
  it('/v1/yjs/ (empty room) closes 4400 after a valid token; /v1/yjs without a room, and non-WebSocket routes', async () => {
    const node = await testNode('n');
    const t = await node.token();
    const seen = {
      emptyRoom: wsOutcome(await rawWs(port(node), `/v1/yjs/?token=${t}`)),
      noSlash: wsOutcome(await rawWs(port(node), `/v1/yjs?token=${t}`)),
      statusRoute: wsOutcome(await rawWs(port(node), `/v1/status?token=${t}`)),
      noToken: wsOutcome(await rawWs(port(node), `/v1/yjs`)),
    };
    // The §7 rule: 4400 for a bad name (an empty one included), 4401 before it for no token.
    expect(seen).toEqual({ emptyRoom: 'close 4400', noSlash: 'close 4400', statusRoute: expect.stringMatching(/^close 44/), noToken: 'close 4401' });
  });
});

describe('§2/§7 allowedOrigins: browser origins allowed on the API', () => {
  it('an SSE stream (EventSource, ?token=) from an allowed origin can be read by the browser (CORS)', async () => {
    const node = await testNode('n', { allowedOrigins: ['http://app.localhost:5173'] });
    const t = await node.token(['read:**']);
    const a = await http(port(node), { path: `/v1/docs/x/events?token=${t}`, headers: { origin: 'http://app.localhost:5173' } });
    expect(a.status).toBe(200);
    expect(a.headers['access-control-allow-origin'], 'no Access-Control-Allow-Origin: a browser on that origin cannot read the stream').toBe('http://app.localhost:5173');
  });
});

describe('§7 token checks as wired to tessera.json', () => {
  it('apiTokenMaxTtl from the config: a longer-lived token is 401 on HTTP and 4401 on the WebSocket', async () => {
    const node = await testNode('n', { apiTokenMaxTtl: '1h' });
    const id = await readKeyFile(join(node.dir, 'identity.json'));
    const long = await issueApiToken(id, { scopes: ['read:**'], ttlMs: 2 * 3_600_000 });
    const ok = await issueApiToken(id, { scopes: ['read:**'], ttlMs: 3_600_000 });
    expect((await http(port(node), { path: '/v1/status', headers: { authorization: `Bearer ${long}` } })).status).toBe(401);
    expect((await http(port(node), { path: '/v1/status', headers: { authorization: `Bearer ${ok}` } })).status).toBe(200);
    expect(wsOutcome(await rawWs(port(node), `/v1/yjs/x?token=${long}`))).toBe('close 4401');
  });

  it('clockTolerance from the config: a token expired 5 s ago is accepted with the default 30s and refused with "0s"', async () => {
    const tolerant = await testNode('t');
    const strict = await testNode('s', { clockTolerance: '0s' });
    for (const [node, want] of [[tolerant, 200], [strict, 401]] as const) {
      const id = await readKeyFile(join(node.dir, 'identity.json'));
      const stale = await issueApiToken(id, { scopes: ['read:**'], ttlMs: 60_000, now: Date.now() - 65_000 });
      expect((await http(port(node), { path: '/v1/status', headers: { authorization: `Bearer ${stale}` } })).status, node.name).toBe(want);
    }
  });
});

/** A raw y-websocket client: collects messages and the close. */
function rawClient(url: string) {
  const ws = new WebSocket(url);
  const messages: Buffer[] = [];
  const closed = new Promise<{ code: number; reason: string }>((r) => ws.on('close', (code, reason) => r({ code, reason: reason.toString() })));
  ws.on('message', (d: Buffer) => messages.push(d));
  ws.on('error', () => undefined);
  onTestFinished(() => ws.terminate());
  const open = new Promise<void>((r) => ws.once('open', () => r()));
  return { ws, messages, closed, open };
}



describe('§7 read-only tokens on the WebSocket route', () => {
  it('a reconnecting read-only app whose sync step 2 carries its whole state (deletions included) is not closed', async () => {
    const a = await testNode('a');
    const writer = new Y.Doc();
    writer.getText('t').insert(0, 'hello world');
    expect((await postUpdate(a, 'ro', Y.encodeStateAsUpdate(writer))).status).toBe(200);
    writer.getText('t').delete(0, 6);
    expect((await postUpdate(a, 'ro', Y.encodeStateAsUpdate(writer))).status).toBe(200);
    // The reader holds exactly what the node holds (it synced earlier), and replays it on reconnect.
    const reader = new Y.Doc();
    Y.applyUpdate(reader, Y.encodeStateAsUpdate(writer));
    const c = rawClient(`ws://127.0.0.1:${port(a)}/v1/yjs/ro?token=${await a.token(['read:**'])}`);
    await c.open;
    c.ws.send(syncMessage(0, Y.encodeStateVector(reader)));
    c.ws.send(syncMessage(1, Y.encodeStateAsUpdate(reader)));
    c.ws.send(syncMessage(2, Y.encodeStateAsUpdate(reader)));
    const outcome = await Promise.race([c.closed, new Promise((r) => setTimeout(() => r('still open'), 1500))]);
    expect(outcome).toBe('still open');
  });

  it('a real write from a read-only token: 4403 with a reason saying read-only; not applied, not sent to another app, not replicated', async () => {
    const a = await testNode('a');
    const b = await testNode('b');
    await linkPair(a, b);
    const base = new Y.Doc();
    base.getMap('m').set('k', 'base');
    expect((await postUpdate(a, 'ro2', Y.encodeStateAsUpdate(base))).status).toBe(200);
    await waitUntil(async () => (await getDoc(b, 'ro2')).status === 200);

    const other = rawClient(`ws://127.0.0.1:${port(a)}/v1/yjs/ro2?token=${await a.token()}`);
    await other.open;
    const reader = rawClient(`ws://127.0.0.1:${port(a)}/v1/yjs/ro2?token=${await a.token(['read:ro2'])}`);
    await reader.open;
    await new Promise((r) => setTimeout(r, 200));
    const before = other.messages.length;
    const sneaky = new Y.Doc();
    Y.applyUpdate(sneaky, Y.encodeStateAsUpdate(base));
    const sv = Y.encodeStateVector(sneaky);
    sneaky.getMap('m').set('k', 'sneaky');
    reader.ws.send(syncMessage(2, Y.encodeStateAsUpdate(sneaky, sv)));
    const closed = await reader.closed;
    expect(closed.code).toBe(4403);
    expect(closed.reason).toMatch(/read-only/);
    await new Promise((r) => setTimeout(r, 500));
    expect(other.messages.slice(before).filter((m) => m[0] === 0 && m[1] === 2)).toEqual([]);
    expect((await getDoc(a, 'ro2')).body).toEqual({ m: { k: 'base' } });
    expect((await getDoc(b, 'ro2')).body).toEqual({ m: { k: 'base' } });
  });
});

describe('§7 Host check details', () => {
  it('no Host header at all (HTTP/1.0) is 421 with the JSON error body', async () => {
    const node = await testNode('n');
    const resp = await raw(port(node), 'GET /healthz HTTP/1.0\r\n\r\n');
    expect(statusAndBody(resp.replace(/^HTTP\/1\.0/, 'HTTP/1.1'))).toEqual({ status: 421, body: errorBody });
  });
});

describe('§1/§7 API token allow-lists, black-box through the running node (HTTP and WebSocket)', () => {
  it('wrong typ, none, HS256, aud array, foreign iss/aud, missing jti/iat/exp, nbf in the future: 401 / 4401; the control is 200 / open', async () => {
    const { SignJWT, UnsecuredJWT } = await import('jose');
    const node = await testNode('n');
    const id = await readKeyFile(join(node.dir, 'identity.json'));
    const now = Math.floor(Date.now() / 1000);
    const claims = { scope: ['read:**'], iss: id.id, aud: id.id, iat: now, exp: now + 600, jti: 'j1' };
    const sign = (header: Record<string, unknown>, c: Record<string, unknown>) =>
      new SignJWT(c).setProtectedHeader({ alg: 'EdDSA', ...header } as never).sign(id.privateKey);
    const omit = (k: string) => Object.fromEntries(Object.entries(claims).filter(([key]) => key !== k));
    const other = (await generateKeyPair()).id;
    const cases: Record<string, string> = {
      control: await sign({ typ: 'tessera-api+jwt' }, claims),
      typJWT: await sign({ typ: 'JWT' }, claims),
      noTyp: await sign({}, claims),
      envelopeTyp: await sign({ typ: 'tessera-envelope+jwt' }, claims),
      none: new UnsecuredJWT(claims).encode(),
      audArray: await sign({ typ: 'tessera-api+jwt' }, { ...claims, aud: [id.id] }),
      foreignAud: await sign({ typ: 'tessera-api+jwt' }, { ...claims, aud: other }),
      foreignIss: await sign({ typ: 'tessera-api+jwt' }, { ...claims, iss: other }),
      noJti: await sign({ typ: 'tessera-api+jwt' }, omit('jti')),
      noIat: await sign({ typ: 'tessera-api+jwt' }, omit('iat')),
      noExp: await sign({ typ: 'tessera-api+jwt' }, omit('exp')),
      nbfFuture: await sign({ typ: 'tessera-api+jwt' }, { ...claims, nbf: now + 3600 }),
      iatFuture: await sign({ typ: 'tessera-api+jwt' }, { ...claims, iat: now + 3600, exp: now + 3700 }),
    };
    const seen: Record<string, string> = {};
    for (const [label, t] of Object.entries(cases)) {
      const h = await http(port(node), { path: '/v1/status', headers: { authorization: `Bearer ${t}` } });
      seen[label] = `${h.status} ${wsOutcome(await rawWs(port(node), `/v1/yjs/x?token=${t}`))}`;
    }
    const want = Object.fromEntries(Object.keys(cases).map((k) => [k, k === 'control' ? '200 open' : '401 close 4401']));
    expect(seen).toEqual(want);
  });
});

describe('§7 /authors: clients ranges half-open, maximal and sorted; names from the peers file', () => {
  it('two envelopes of one client give one merged range; a replicated origin shows its peers-file name', async () => {
    const a = await testNode('alpha');
    const b = await testNode('bravo');
    await linkPair(a, b);
    const app = new Y.Doc();
    app.clientID = 77;
    const other = new Y.Doc();
    other.clientID = 5;
    let sv = Y.encodeStateVector(app);
    app.getText('t').insert(0, 'hello');
    expect((await postUpdate(a, 'au', Y.encodeStateAsUpdate(app, sv))).status).toBe(200);
    sv = Y.encodeStateVector(app);
    app.getText('t').insert(5, ' world');
    expect((await postUpdate(a, 'au', Y.encodeStateAsUpdate(app, sv))).status).toBe(200);
    other.getMap('m').set('x', 1);
    expect((await postUpdate(a, 'au', Y.encodeStateAsUpdate(other))).status).toBe(200);
    const want = [{ origin: a.id, name: 'alpha', envelopes: 3, clients: [[5, 0, 1], [77, 0, 11]] }];
    const get = async (n: TestNode) => (await http(port(n), { path: '/v1/docs/au/authors', headers: { authorization: `Bearer ${await n.token()}` } })).text;
    expect(JSON.parse(await get(a))).toEqual({ authors: want });
    await waitUntil(async () => JSON.parse(await get(b)).authors?.[0]?.envelopes === 3, { what: 'b holds all three' });
    expect(JSON.parse(await get(b))).toEqual({ authors: want });
  });
});
