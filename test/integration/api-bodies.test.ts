/**
 * Contract (DESIGN.md §7, §9): request bodies. Only one V1 Yjs update is a
 * body; anything else is a 400 and nothing of it is stored; a body over
 * maxUpdateBytes is a 413, from Content-Length or counted while streaming.
 * `GET /state?sv=` returns exactly what a state vector lacks; a POST of an
 * update already held answers 200 with the same vector and signs nothing.
 */
import { connect } from 'node:net';
import { createHash } from 'node:crypto';
import { describe, expect, it, onTestFinished } from 'vitest';
import WebSocket from 'ws';
import * as Y from 'yjs';
import * as encoding from 'lib0/encoding';
import { testNode, type TestNode } from '../helpers/cluster.js';
import { appDoc, getDoc, getState, postUpdate } from '../helpers/docs.js';

const LIMITS = { maxUpdateBytes: 1000, maxFrameBytes: 100_000 };

/** Deterministic bytes that are not a Yjs update. */
function noise(n: number, seed = 'tessera'): Buffer {
  const out: Buffer[] = [];
  let h = Buffer.from(seed);
  while (Buffer.concat(out).length < n) out.push((h = createHash('sha256').update(h).digest()));
  return Buffer.concat(out).subarray(0, n);
}

/** A valid V1 update of more than `bytes` bytes. */
function bigUpdate(bytes: number): Uint8Array {
  const u = appDoc().edit((d) => d.getText('t').insert(0, 'x'.repeat(bytes)));
  expect(u.byteLength).toBeGreaterThan(bytes);
  return u;
}

/** An HTTP/1.1 exchange written by hand on a socket; resolves with the answer as soon as it is complete. */
function handWritten(node: TestNode, head: string, parts: Buffer[]): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const socket = connect(node.daemon.apiAddress.port, '127.0.0.1');
    onTestFinished(() => void socket.destroy());
    let buf = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const headers = buf.subarray(0, end).toString('latin1');
      const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(headers)?.[1] ?? NaN);
      const body = buf.subarray(end + 4);
      if (!(body.length >= length)) return;
      socket.destroy();
      resolve({ status: Number(headers.split(' ')[1]), body: JSON.parse(body.subarray(0, length).toString('utf8')) });
    });
    socket.on('error', () => undefined);
    socket.on('close', () => reject(new Error(`connection closed before a whole answer: ${buf.toString('latin1').slice(0, 200)}`)));
    socket.write(head);
    for (const p of parts) socket.write(p);
  });
}

function postHead(node: TestNode, doc: string, token: string, extra: string): string {
  return (
    `POST /v1/docs/${encodeURIComponent(doc)}/updates HTTP/1.1\r\n` +
    `Host: 127.0.0.1:${node.daemon.apiAddress.port}\r\n` +
    `Authorization: Bearer ${token}\r\n` +
    `Content-Type: application/octet-stream\r\n` +
    extra +
    `\r\n`
  );
}

const chunk = (b: Uint8Array) => Buffer.concat([Buffer.from(`${b.byteLength.toString(16)}\r\n`), Buffer.from(b), Buffer.from('\r\n')]);
const errorBody = (code: string) => ({ error: { code, message: expect.any(String) } });

async function expectNothingStored(node: TestNode, doc: string): Promise<void> {
  expect((await getDoc(node, doc)).status).toBe(404);
  const res = await fetch(`${node.api}/v1/docs`, { headers: { authorization: `Bearer ${await node.token()}` } });
  expect(((await res.json()) as { docs: { name: string }[] }).docs.map((d) => d.name)).not.toContain(doc);
}

/** An open y-websocket connection (after the server's sync step 1), with its close code. */
async function yws(node: TestNode, doc: string, token: string) {
  const ws = new WebSocket(`ws://127.0.0.1:${node.daemon.apiAddress.port}/v1/yjs/${doc}?token=${token}`);
  onTestFinished(() => ws.terminate());
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  await new Promise<void>((resolve, reject) => {
    ws.once('message', () => resolve());
    ws.once('error', reject);
  });
  const sendUpdate = (update: Uint8Array) => {
    const e = encoding.createEncoder();
    encoding.writeVarUint(e, 0); // messageSync
    encoding.writeVarUint(e, 2); // syncUpdate
    encoding.writeVarUint8Array(e, update);
    ws.send(encoding.toUint8Array(e));
  };
  return { ws, closed, sendUpdate };
}

describe('POST /v1/docs/{name}/updates: bodies that are not one V1 Yjs update (DESIGN.md §7)', () => {
  const v1 = () => appDoc().edit((d) => d.getText('t').insert(0, 'hello'));
  const v2 = () => {
    const d = new Y.Doc();
    d.getText('t').insert(0, 'hello');
    return Y.encodeStateAsUpdateV2(d);
  };
  const cases: [string, () => Uint8Array][] = [
    ['random bytes', () => noise(64)],
    ['more random bytes', () => noise(700, 'other seed')],
    ['a V2 update (Y.encodeStateAsUpdateV2)', v2],
    ['a V2 update of a merged pair', () => Y.mergeUpdatesV2([v2(), v2()])],
    ['a V1 update with trailing bytes', () => Buffer.concat([v1(), Buffer.from([1, 2, 3])])],
    ['a truncated V1 update', () => v1().subarray(0, 8)],
    ['text', () => Buffer.from('{"t":"hello"}')],
    ['an empty body', () => new Uint8Array(0)],
  ];
  for (const [label, body] of cases) {
    it(`${label}: 400 bad_update, and nothing is stored`, async () => {
      const node = await testNode('bodies');
      const r = await postUpdate(node, 'notes/bad', body());
      expect(r.status).toBe(400);
      expect(r.body).toEqual(errorBody('bad_update'));
      await expectNothingStored(node, 'notes/bad');
    });
  }

  it('a bad body sent to a document that exists leaves it as it was', async () => {
    const node = await testNode('bodies');
    const good = await postUpdate(node, 'notes/kept', appDoc().edit((d) => d.getText('t').insert(0, 'kept')));
    expect(good.status).toBe(200);
    for (const [, body] of cases) expect((await postUpdate(node, 'notes/kept', body())).status).toBe(400);
    expect((await getDoc(node, 'notes/kept')).body).toEqual({ t: 'kept' });
    const list = (await (await fetch(`${node.api}/v1/docs`, { headers: { authorization: `Bearer ${await node.token()}` } })).json()) as { docs: { vector: unknown }[] };
    expect(list.docs[0]!.vector).toEqual(good.body.vector);
  });
});

describe('POST bodies over maxUpdateBytes: 413 (DESIGN.md §7)', () => {
  it('by Content-Length, answered before the body is read, and nothing is stored', async () => {
    const node = await testNode('limits', LIMITS);
    const r = await postUpdate(node, 'notes/big', bigUpdate(2000));
    expect(r.status).toBe(413);
    expect(r.body).toEqual(errorBody('too_large'));
    // A declared length alone is enough: the server answers without waiting for a byte of body.
    const early = await handWritten(node, postHead(node, 'notes/big', await node.token(), 'Content-Length: 5000\r\n'), []);
    expect(early).toEqual({ status: 413, body: errorBody('too_large') });
    await expectNothingStored(node, 'notes/big');
  });

  it('streamed with chunked transfer encoding (no Content-Length): counted while streaming, and nothing is stored', async () => {
    const node = await testNode('limits', LIMITS);
    const token = await node.token();
    const update = bigUpdate(2000);
    const parts: Buffer[] = [];
    for (let i = 0; i < update.byteLength; i += 200) parts.push(chunk(update.subarray(i, i + 200)));
    const whole = await handWritten(node, postHead(node, 'notes/big', token, 'Transfer-Encoding: chunked\r\n'), [...parts, Buffer.from('0\r\n\r\n')]);
    expect(whole).toEqual({ status: 413, body: errorBody('too_large') });
    // Without the last chunk, the server must already have answered: it counted while streaming.
    const partial = await handWritten(node, postHead(node, 'notes/big', token, 'Transfer-Encoding: chunked\r\n'), parts.slice(0, 6));
    expect(partial).toEqual({ status: 413, body: errorBody('too_large') });
    await expectNothingStored(node, 'notes/big');
  });

  it('a chunked body within the limit is accepted', async () => {
    const node = await testNode('limits', LIMITS);
    const update = appDoc().edit((d) => d.getText('t').insert(0, 'y'.repeat(900)));
    expect(update.byteLength).toBeLessThanOrEqual(1000);
    const parts: Buffer[] = [];
    for (let i = 0; i < update.byteLength; i += 100) parts.push(chunk(update.subarray(i, i + 100)));
    const r = await handWritten(node, postHead(node, 'notes/ok', await node.token(), 'Transfer-Encoding: chunked\r\n'), [...parts, Buffer.from('0\r\n\r\n')]);
    expect(r.status).toBe(200);
    expect((await getDoc(node, 'notes/ok')).body).toEqual({ t: 'y'.repeat(900) });
  });

  it('413 comes before 400: an oversized body that is not an update is a 413', async () => {
    const node = await testNode('limits', LIMITS);
    const r = await postUpdate(node, 'notes/big', noise(3000));
    expect(r).toEqual({ status: 413, body: errorBody('too_large') });
  });
});

describe('y-websocket bodies: 4413 and 4400 (DESIGN.md §7)', () => {
  it('an update over maxUpdateBytes closes the socket with 4413; nothing is stored', async () => {
    const node = await testNode('ws-limits', LIMITS);
    const c = await yws(node, 'notes/wsbig', await node.token());
    c.sendUpdate(bigUpdate(2000));
    expect((await c.closed).code).toBe(4413);
    await expectNothingStored(node, 'notes/wsbig');
  });

  it('a message far over maxUpdateBytes (beyond the socket\'s frame cap) also closes with 4413, not a code y-websocket retries', async () => {
    const node = await testNode('ws-limits', LIMITS);
    const c = await yws(node, 'notes/wshuge', await node.token());
    c.sendUpdate(bigUpdate(200_000));
    expect((await c.closed).code).toBe(4413);
    await expectNothingStored(node, 'notes/wshuge');
  });

  for (const [label, body] of [
    ['random bytes', () => noise(64)],
    ['a V2 update', () => {
      const d = new Y.Doc();
      d.getText('t').insert(0, 'hello');
      return Y.encodeStateAsUpdateV2(d);
    }],
  ] as const) {
    it(`${label} as a sync update closes the socket with 4400; nothing is stored`, async () => {
      const node = await testNode('ws-bodies');
      const c = await yws(node, 'notes/wsbad', await node.token());
      c.sendUpdate(body());
      expect((await c.closed).code).toBe(4400);
      await expectNothingStored(node, 'notes/wsbad');
    });
  }
});

describe('GET /v1/docs/{name}/state?sv= (DESIGN.md §7)', () => {
  const b64 = (u: Uint8Array) => Buffer.from(u).toString('base64url');

  async function state(node: TestNode, doc: string, query: string): Promise<Response> {
    return fetch(`${node.api}/v1/docs/${encodeURIComponent(doc)}/state${query}`, { headers: { authorization: `Bearer ${await node.token()}` } });
  }

  const structIds = (u: Uint8Array) =>
    Y.decodeUpdate(u)
      .structs.filter((s) => !(s instanceof Y.Skip))
      .map((s) => `${s.id.client}:${s.id.clock}+${s.length}`)
      .sort();

  it('returns exactly what the state vector lacks, as one V1 update', async () => {
    const node = await testNode('sv');
    const app = appDoc(1);
    expect((await postUpdate(node, 'notes/sv', app.edit((d) => d.getText('t').insert(0, 'hello')))).status).toBe(200);
    // An app that stops here.
    const behind = new Y.Doc();
    Y.applyUpdate(behind, Y.encodeStateAsUpdate(app.doc));
    const sv = Y.encodeStateVector(behind);
    // Then more by the same client, another client, and a deletion.
    expect((await postUpdate(node, 'notes/sv', app.edit((d) => d.getText('t').insert(5, ' world')))).status).toBe(200);
    expect((await postUpdate(node, 'notes/sv', appDoc(2).edit((d) => d.getMap('m').set('k', 'v')))).status).toBe(200);
    expect((await postUpdate(node, 'notes/sv', app.edit((d) => d.getText('t').delete(0, 1)))).status).toBe(200);

    const res = await state(node, 'notes/sv', `?sv=${b64(sv)}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/octet-stream');
    const diff = new Uint8Array(await res.arrayBuffer());
    const full = await getState(node, 'notes/sv');

    // Only structs beyond the state vector...
    const meta = Y.parseUpdateMeta(diff);
    for (const [client, from] of meta.from) expect(from, `client ${client}`).toBeGreaterThanOrEqual(Y.decodeStateVector(sv).get(client) ?? 0);
    // ...all of them: the same structs as the full state diffed against the vector...
    expect(structIds(diff)).toEqual(structIds(Y.diffUpdate(full, sv)));
    expect(diff.byteLength).toBeLessThan(full.byteLength);
    // ...and applied to the app that stopped, it is the document.
    Y.applyUpdate(behind, diff);
    const whole = new Y.Doc();
    Y.applyUpdate(whole, full);
    expect(behind.getText('t').toString()).toBe('ello world');
    expect(behind.getMap('m').toJSON()).toEqual({ k: 'v' });
    expect(Y.encodeStateVector(behind)).toEqual(Y.encodeStateVector(whole));
    expect((await getDoc(node, 'notes/sv')).body).toEqual({ t: 'ello world', m: { k: 'v' } });
  });

  it('a state vector that lacks nothing gets no structs; an empty one gets the whole state', async () => {
    const node = await testNode('sv');
    const app = appDoc(1);
    expect((await postUpdate(node, 'notes/sv', app.edit((d) => d.getText('t').insert(0, 'all')))).status).toBe(200);
    const full = await getState(node, 'notes/sv');
    const none = new Uint8Array(await (await state(node, 'notes/sv', `?sv=${b64(Y.encodeStateVectorFromUpdate(full))}`)).arrayBuffer());
    expect(structIds(none)).toEqual([]);
    const everything = new Uint8Array(await (await state(node, 'notes/sv', `?sv=${b64(Y.encodeStateVector(new Y.Doc()))}`)).arrayBuffer());
    expect(structIds(everything)).toEqual(structIds(full));
  });

  it('a bad sv is 400 with the error body', async () => {
    const node = await testNode('sv');
    expect((await postUpdate(node, 'notes/sv', appDoc().edit((d) => d.getText('t').insert(0, 'x')))).status).toBe(200);
    // [5]: five entries announced, none there; [0xff]: an unterminated varint; nothing at all.
    for (const sv of [b64(new Uint8Array([5])), b64(new Uint8Array([0xff])), b64(new Uint8Array([1, 0x80])), '']) {
      const res = await state(node, 'notes/sv', `?sv=${sv}`);
      expect(res.status, `sv=${sv}`).toBe(400);
      expect(await res.json()).toEqual(errorBody('bad_state_vector'));
    }
  });
});

describe('POST of an update already held (DESIGN.md §7: "200 { vector } once durable, even when nothing was new")', () => {
  it('the same update twice: the second answers 200 with the same vector and signs nothing', async () => {
    const node = await testNode('twice');
    const update = appDoc().edit((d) => d.getArray('a').push(['one', 'two']));
    const first = await postUpdate(node, 'notes/twice', update);
    const second = await postUpdate(node, 'notes/twice', update);
    expect(first.status).toBe(200);
    expect(Object.keys(first.body)).toEqual(['vector']);
    expect(second).toEqual(first);
    const authors = (await (await fetch(`${node.api}/v1/docs/notes%2Ftwice/authors`, { headers: { authorization: `Bearer ${await node.token()}` } })).json()) as {
      authors: { origin: string; envelopes: number }[];
    };
    expect(authors.authors).toEqual([{ origin: node.id, name: 'twice', envelopes: 1, clients: expect.any(Array) }]);
    expect((await getDoc(node, 'notes/twice')).body).toEqual({ a: ['one', 'two'] });
  });
});

describe('GET /v1/docs/{name}: the document as JSON (DESIGN.md §7)', () => {
  it('infers each root: map entries → object, string/format/embed → string, XML → XML string, anything else → array; empty roots left out', async () => {
    const node = await testNode('json');
    const update = appDoc().edit((d) => {
      d.getText('text').insert(0, 'plain');
      d.getText('rich').insert(0, 'bold', { bold: true });
      d.getText('embed').insertEmbed(0, { image: 'x.png' });
      d.getMap('map').set('a', 1);
      d.getMap('map').set('b', { nested: [true, null] });
      d.getArray('list').push([1, 'two', { three: 3 }]);
      const p = new Y.XmlElement('p');
      p.insert(0, [new Y.XmlText('hello')]);
      d.getXmlFragment('xml').insert(0, [p]);
      d.getText('emptied').insert(0, 'gone');
      d.getText('emptied').delete(0, 4);
      d.getMap('emptyMap').set('k', 1);
      d.getMap('emptyMap').delete('k');
    });
    expect((await postUpdate(node, 'notes/json', update)).status).toBe(200);
    const got = (await getDoc(node, 'notes/json')).body;
    expect(got).toEqual({
      text: 'plain',
      rich: 'bold',
      embed: expect.any(String),
      map: { a: 1, b: { nested: [true, null] } },
      list: [1, 'two', { three: 3 }],
      xml: '<p>hello</p>',
    });
    // Reading works on a scratch copy: a second read answers the same.
    const again = (await getDoc(node, 'notes/json')).body;
    expect(again).toEqual(got);
  });
});
