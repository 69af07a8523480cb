/**
 * Contract (DESIGN.md §7): the scope matrix of the local API. Every route is
 * asked with tokens holding read, write, both or no matching scope, about a
 * document inside and one outside the glob; the exact status (or WebSocket
 * close code) and the error body `{"error":{"code","message"}}` are asserted.
 */
import { describe, expect, it } from 'vitest';
import { http, outcome, rawWs, wsOutcome } from '../helpers/api.js';
import { randomBytes } from 'node:crypto';
import { testNode, type TestNode } from '../helpers/cluster.js';
import { appDoc, postUpdate } from '../helpers/docs.js';
import { generateKeyPair } from '../../src/identity/keys.js';
import { issueApiToken } from '../../src/tokens/api-token.js';



const IN = 'notes/in';
const OUT = 'private/out';

/** Asks every route of §7 with `headers` (and `?token=` for the WebSocket); returns route → outcome. */
async function everyRoute(node: TestNode, auth: { headers: Record<string, string>; query: string }): Promise<Record<string, string>> {
  const port = node.daemon.apiAddress.port;
  const out: Record<string, string> = {};
  const get = async (path: string) => outcome(await http(port, { path, headers: auth.headers }));
  out['GET /v1/status'] = await get('/v1/status');
  out['GET /v1/docs'] = await get('/v1/docs');
  out['GET /v1/verify'] = await get('/v1/verify');
  out['GET /metrics'] = await get('/metrics');
  for (const [label, doc] of [['in', IN], ['out', OUT]] as const) {
    const enc = encodeURIComponent(doc);
    out[`GET doc ${label}`] = await get(`/v1/docs/${enc}`);
    out[`GET state ${label}`] = await get(`/v1/docs/${enc}/state`);
    out[`GET authors ${label}`] = await get(`/v1/docs/${enc}/authors`);
    out[`GET events ${label}`] = await get(`/v1/docs/${enc}/events`);
    const update = appDoc().edit((d) => d.getMap('m').set('k', randomBytes(4).toString('hex')));
    out[`POST updates ${label}`] = outcome(await http(port, { method: 'POST', path: `/v1/docs/${enc}/updates`, headers: { ...auth.headers, 'content-type': 'application/octet-stream' }, body: update }));
    out[`WS ${label}`] = wsOutcome(await rawWs(port, `/v1/yjs/${doc}${auth.query}`, auth.headers));
  }
  return out;
}

/** The expected matrix: what each route answers given what the token covers. */
function expected(t: { readIn: boolean; readOut: boolean; writeIn: boolean; writeOut: boolean; readAll: boolean; valid: boolean }): Record<string, string> {
  if (!t.valid) {
    const u = '401 unauthorized';
    return {
      'GET /v1/status': u, 'GET /v1/docs': u, 'GET /v1/verify': u, 'GET /metrics': u,
      'GET doc in': u, 'GET state in': u, 'GET authors in': u, 'GET events in': u, 'POST updates in': u, 'WS in': 'close 4401',
      'GET doc out': u, 'GET state out': u, 'GET authors out': u, 'GET events out': u, 'POST updates out': u, 'WS out': 'close 4401',
    };
  }
  const r = (ok: boolean) => (ok ? '200' : '403 forbidden');
  return {
    'GET /v1/status': '200',
    'GET /v1/docs': '200',
    'GET /v1/verify': r(t.readAll),
    'GET /metrics': r(t.readAll),
    'GET doc in': r(t.readIn), 'GET state in': r(t.readIn), 'GET authors in': r(t.readIn), 'GET events in': r(t.readIn),
    'POST updates in': r(t.writeIn),
    'WS in': t.readIn ? 'open' : 'close 4403',
    'GET doc out': r(t.readOut), 'GET state out': r(t.readOut), 'GET authors out': r(t.readOut), 'GET events out': r(t.readOut),
    'POST updates out': r(t.writeOut),
    'WS out': t.readOut ? 'open' : 'close 4403',
  };
}

/** A node holding one document inside `notes/**` and one outside it. */
async function nodeWithDocs(): Promise<TestNode> {
  const node = await testNode('scopes');
  for (const doc of [IN, OUT]) expect((await postUpdate(node, doc, appDoc().edit((d) => d.getText('t').insert(0, doc)))).status).toBe(200);
  return node;
}

async function listed(node: TestNode, token: string): Promise<{ name: string; vector: Record<string, number> }[]> {
  const res = await fetch(`${node.api}/v1/docs`, { headers: { authorization: `Bearer ${token}` } });
  expect(res.status).toBe(200);
  const body = (await res.json()) as { docs: { name: string; vector: Record<string, number> }[] };
  expect(Object.keys(body)).toEqual(['docs']);
  for (const d of body.docs) expect(Object.keys(d).sort()).toEqual(['name', 'vector']);
  return body.docs;
}

const TOKENS = [
  { label: 'read', scopes: ['read:notes/**'], readIn: true, readOut: false, writeIn: false, writeOut: false, readAll: false },
  { label: 'write', scopes: ['write:notes/**'], readIn: false, readOut: false, writeIn: true, writeOut: false, readAll: false },
  { label: 'read and write', scopes: ['read:notes/**', 'write:notes/**'], readIn: true, readOut: false, writeIn: true, writeOut: false, readAll: false },
  { label: 'none matching', scopes: ['read:other/**', 'write:other/**', 'read:notes', 'write:notes/in/**'], readIn: false, readOut: false, writeIn: false, writeOut: false, readAll: false },
  { label: 'read:** (no write)', scopes: ['read:**'], readIn: true, readOut: true, writeIn: false, writeOut: false, readAll: true },
  { label: 'write:** (no read)', scopes: ['write:**'], readIn: false, readOut: false, writeIn: true, writeOut: true, readAll: false },
  { label: 'read:* (one segment, not read:**)', scopes: ['read:*', 'read:*/*'], readIn: true, readOut: true, writeIn: false, writeOut: false, readAll: false },
] as const;

describe('local API scope matrix (DESIGN.md §7)', () => {
  for (const t of TOKENS) {
    it(`a token with ${t.label} (${t.scopes.join(' ')}): every route answers as its scope says`, async () => {
      const node = await nodeWithDocs();
      const token = await node.token([...t.scopes]);
      const full = await node.token();
      const before = await listed(node, full);
      const got = await everyRoute(node, { headers: { authorization: `Bearer ${token}` }, query: '' });
      expect(got).toEqual(expected({ ...t, valid: true }));

      // GET /v1/docs lists exactly what the token may read.
      const names = (await listed(node, token)).map((d) => d.name);
      expect(names).toEqual([...(t.readIn ? [IN] : []), ...(t.readOut ? [OUT] : [])].sort());

      // A refused POST changed nothing; an allowed one moved the vector.
      const after = await listed(node, full);
      for (const [doc, allowed] of [[IN, t.writeIn], [OUT, t.writeOut]] as const) {
        const v0 = before.find((d) => d.name === doc)!.vector;
        const v1 = after.find((d) => d.name === doc)!.vector;
        if (allowed) expect(v1, doc).not.toEqual(v0);
        else expect(v1, doc).toEqual(v0);
      }
    });
  }

  it('the same matrix holds with ?token= on the WebSocket route', async () => {
    const node = await nodeWithDocs();
    const port = node.daemon.apiAddress.port;
    const read = await node.token(['read:notes/**']);
    expect(wsOutcome(await rawWs(port, `/v1/yjs/${IN}?token=${read}`))).toBe('open');
    expect(wsOutcome(await rawWs(port, `/v1/yjs/${OUT}?token=${read}`))).toBe('close 4403');
    const write = await node.token(['write:notes/**']);
    expect(wsOutcome(await rawWs(port, `/v1/yjs/${IN}?token=${write}`))).toBe('close 4403');
  });

  it('no token, a garbage token, a malformed Authorization header and a token of another node: 401 on every route, 4401 on the WebSocket', async () => {
    const node = await nodeWithDocs();
    const stranger = await generateKeyPair();
    const foreign = await issueApiToken(stranger, { scopes: ['read:**', 'write:**'], ttlMs: 3_600_000 });
    const other = await testNode('other');
    const otherNodes = await other.token();
    const cases: [string, { headers: Record<string, string>; query: string }][] = [
      ['no token', { headers: {}, query: '' }],
      ['garbage bearer', { headers: { authorization: 'Bearer not.a.token' }, query: '?token=not.a.token' }],
      ['Basic auth', { headers: { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` }, query: '' }],
      ['foreign key', { headers: { authorization: `Bearer ${foreign}` }, query: `?token=${foreign}` }],
      ['token of another node', { headers: { authorization: `Bearer ${otherNodes}` }, query: `?token=${otherNodes}` }],
    ];
    for (const [label, auth] of cases) {
      expect(await everyRoute(node, auth), label).toEqual(expected({ readIn: false, readOut: false, writeIn: false, writeOut: false, readAll: false, valid: false }));
    }
    // /healthz alone needs no token.
    const health = await http(node.daemon.apiAddress.port, { path: '/healthz' });
    expect(health.status).toBe(200);
    expect(JSON.parse(health.text)).toEqual({ ok: true });
  });

  it('GET /v1/status answers any valid token, even one whose scopes cover no document', async () => {
    const node = await nodeWithDocs();
    for (const scopes of [['read:nothing/here'], ['write:**'], ['read:**']]) {
      const a = await http(node.daemon.apiAddress.port, { path: '/v1/status', headers: { authorization: `Bearer ${await node.token(scopes)}` } });
      expect(a.status, scopes.join()).toBe(200);
      expect(JSON.parse(a.text)).toMatchObject({ id: node.id, name: 'scopes', docs: 2 });
    }
  });
});
