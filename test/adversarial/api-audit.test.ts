/**
 * Hostile and buggy local API clients (DESIGN.md §1, §7, §9): what an app
 * holding a token (or a page in a browser on the same machine) can do to a
 * node through the y-websocket endpoint and the HTTP routes. Every attack
 * runs against a real node on 127.0.0.1, port 0, with its own LevelDB
 * folder. Sockets are driven by hand where a well-behaved client library
 * would hide the attack (no answer to a close frame, a reader that never
 * reads). Assertions are on close codes, bytes and what the node stored;
 * never on a timer racing a deadline.
 */
import { request } from 'node:http';
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import * as Y from 'yjs';
import * as encoding from 'lib0/encoding';
import * as awarenessProtocol from 'y-protocols/awareness';
import { testNode, type TestNode } from '../helpers/cluster.js';
import { appDoc, getDoc, postUpdate } from '../helpers/docs.js';
import { awarenessUpdate, syncMessage } from '../helpers/api.js';
import { startDaemon } from '../helpers/node.js';
import { waitUntil } from '../helpers/wait.js';
import { readKeyFile } from '../../src/identity/file.js';
import { issueApiToken } from '../../src/tokens/api-token.js';

const port = (n: TestNode) => n.daemon.apiAddress.port;

interface Frame {
  readonly opcode: number;
  readonly payload: Buffer;
}

/**
 * A WebSocket client by hand: it never answers a close frame (so the node
 * cannot count on the closing handshake), can stop reading, and sends
 * whatever frames it is told to.
 */
class RawWs {
  readonly socket: Socket;
  readonly frames: Frame[] = [];
  /** Resolves when the node ends the TCP connection. */
  readonly ended: Promise<void>;
  #buf = Buffer.alloc(0);
  #waiters: (() => void)[] = [];
  #done = false;

  private constructor(socket: Socket, head: Buffer) {
    this.socket = socket;
    socket.on('error', () => undefined);
    this.ended = new Promise((resolve) =>
      socket.once('close', () => {
        this.#done = true;
        this.#wake();
        resolve();
      }),
    );
    socket.on('data', (d: Buffer) => this.#feed(d));
    if (head.length) this.#feed(head);
    onTestFinished(() => {
      socket.destroy();
    });
  }

  static open(p: number, path: string, headers: Record<string, string> = {}): Promise<RawWs> {
    return new Promise((resolve, reject) => {
      const req = request({
        host: '127.0.0.1',
        port: p,
        path,
        headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': randomBytes(16).toString('base64'), ...headers },
      });
      req.on('response', (res) => reject(new Error(`upgrade refused with HTTP ${res.statusCode}`)));
      req.on('upgrade', (_res, socket, head) => resolve(new RawWs(socket as Socket, head)));
      req.on('error', reject);
      req.end();
    });
  }

  #feed(d: Buffer): void {
    this.#buf = Buffer.concat([this.#buf, d]);
    for (;;) {
      const b = this.#buf;
      if (b.length < 2) break;
      let len = b[1]! & 0x7f;
      let off = 2;
      if (len === 126) {
        if (b.length < 4) break;
        len = b.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (b.length < 10) break;
        len = Number(b.readBigUInt64BE(2));
        off = 10;
      }
      if (b.length < off + len) break;
      this.frames.push({ opcode: b[0]! & 0x0f, payload: Buffer.from(b.subarray(off, off + len)) });
      this.#buf = b.subarray(off + len);
    }
    this.#wake();
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  /** The first frame (taken off the list) that `pred` accepts, or undefined once the connection ended without one. */
  async take(pred: (f: Frame) => boolean = () => true): Promise<Frame | undefined> {
    for (;;) {
      const i = this.frames.findIndex(pred);
      if (i >= 0) return this.frames.splice(i, 1)[0];
      if (this.#done) return undefined;
      await new Promise<void>((r) => this.#waiters.push(r));
    }
  }

  /** The close frame's code, or undefined if the connection ended without one. */
  async closeCode(): Promise<number | undefined> {
    return (await this.take((f) => f.opcode === 8))?.payload.readUInt16BE(0);
  }

  /** One masked binary frame; resolves once the bytes are handed to the kernel (false: the connection is gone). */
  send(payload: Uint8Array, opcode = 2): Promise<boolean> {
    return new Promise((resolve) => {
      if (this.socket.destroyed) return resolve(false);
      this.socket.write(frame(payload, opcode), (err) => resolve(!err));
    });
  }
}

function frame(payload: Uint8Array, opcode = 2): Buffer {
  const len = payload.byteLength;
  const head = len < 126 ? Buffer.from([0x80 | opcode, 0x80 | len]) : len < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
  if (len >= 126 && len < 65536) {
    head[0] = 0x80 | opcode;
    head[1] = 0x80 | 126;
    head.writeUInt16BE(len, 2);
  } else if (len >= 65536) {
    head[0] = 0x80 | opcode;
    head[1] = 0x80 | 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  const mask = randomBytes(4);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i]! ^= mask[i & 3]!;
  return Buffer.concat([head, mask, body]);
}

/** The server's sync step 1 ([0, 0, ...]): the socket is open and the node took the token. */
const isStep1 = (f: Frame) => f.opcode === 2 && f.payload[0] === 0 && f.payload[1] === 0;
const isStep2 = (f: Frame) => f.opcode === 2 && f.payload[0] === 0 && f.payload[1] === 1;
const isAwareness = (f: Frame) => f.opcode === 2 && f.payload[0] === 1;

async function tokenOf(node: TestNode, scopes: string[], opts: { ttlMs?: number; issuedAt?: number } = {}): Promise<string> {
  const identity = await readKeyFile(join(node.dir, 'identity.json'));
  return issueApiToken(identity, { scopes, ttlMs: opts.ttlMs ?? 3_600_000, ...(opts.issuedAt !== undefined ? { now: opts.issuedAt } : {}) });
}

/** A raw socket on the y-websocket route, once the node's sync step 1 arrived. */
async function openDoc(node: TestNode, doc: string, token: string): Promise<RawWs> {
  const ws = await RawWs.open(port(node), `/v1/yjs/${doc}?token=${token}`);
  expect(await ws.take(isStep1), 'the sync step 1 of an open socket').toBeDefined();
  return ws;
}

/** A y-websocket awareness message built by hand: entries of [clientID, clock, JSON state]. */
function awarenessMessage(entries: readonly (readonly [number, number, string])[]): Uint8Array {
  const e = encoding.createEncoder();
  encoding.writeVarUint(e, 1);
  encoding.writeVarUint8Array(e, awarenessUpdate(entries));
  return encoding.toUint8Array(e);
}

/** The awareness states one socket knows after asking the node for all of them (message type 3). */
async function awarenessSeenBy(ws: RawWs): Promise<Map<number, unknown>> {
  ws.frames.splice(0);
  await ws.send(Uint8Array.of(3));
  const f = await ws.take(isAwareness);
  const aw = new awarenessProtocol.Awareness(new Y.Doc());
  aw.setLocalState(null);
  const d = f!.payload.subarray(1);
  // The frame is [1, varUint8Array(update)]: skip the length prefix by decoding it.
  const decoding = await import('lib0/decoding');
  awarenessProtocol.applyAwarenessUpdate(aw, decoding.readVarUint8Array(decoding.createDecoder(d)), 'node');
  const states = new Map(aw.getStates());
  aw.destroy();
  return states;
}

/** A round trip on one socket: the node handles a socket's messages in order, so every earlier message was handled. */
async function roundTrip(ws: RawWs): Promise<void> {
  await ws.send(syncMessage(0, Y.encodeStateVector(new Y.Doc())));
  expect(await ws.take(isStep2), 'the sync step 2 of a round trip').toBeDefined();
}

describe('a socket the node has closed takes nothing more', () => {
  it('a write sent after the 4401 of an expired token (the app never answers the close frame) is not applied', async () => {
    const node = await testNode('expiry');
    // Issued 2.5 s ago for 3 s: it expires within a second of now.
    const token = await tokenOf(node, ['read:notes/**', 'write:notes/**'], { ttlMs: 3000, issuedAt: Date.now() - 2500 });
    const ws = await openDoc(node, 'notes/exp', token);
    expect(await ws.closeCode()).toBe(4401);
    await ws.send(syncMessage(2, appDoc().edit((d) => d.getText('t').insert(0, 'after expiry'))));
    await ws.ended;
    const doc = await getDoc(node, 'notes/exp');
    expect(doc.body).not.toMatchObject({ t: 'after expiry' });
  }, 60_000);

  it('a write sent after a 4409 refusal (the app never answers the close frame) is not applied', async () => {
    const node = await testNode('refused');
    expect((await postUpdate(node, 'notes/eq', appDoc(777).edit((d) => d.getText('t').insert(0, 'alpha')))).status).toBe(200);
    const ws = await openDoc(node, 'notes/eq', await node.token());
    await ws.send(syncMessage(2, appDoc(777).edit((d) => d.getText('t').insert(0, 'omega'))));
    expect(await ws.closeCode()).toBe(4409);
    await ws.send(syncMessage(2, appDoc(888).edit((d) => d.getMap('m').set('k', 'after the refusal'))));
    await ws.ended;
    expect((await getDoc(node, 'notes/eq')).body).not.toHaveProperty('m');
  }, 60_000);

  it('a write that arrives after the token expired by the node\'s clock is refused with 4401, even before the expiry timer fires', async () => {
    let skew = 0;
    const started = await startDaemon({ name: 'clock', now: () => Date.now() + skew });
    const identity = await readKeyFile(join(started.dir, 'identity.json'));
    const token = await issueApiToken(identity, { scopes: ['read:**', 'write:**'], ttlMs: 3_600_000 });
    const p = started.daemon.apiAddress.port;
    const ws = await RawWs.open(p, `/v1/yjs/notes/clock?token=${token}`);
    expect(await ws.take(isStep1)).toBeDefined();
    // The machine slept through the token's expiry: the wall clock moved on, Node's timers did not.
    skew = 2 * 3_600_000;
    await ws.send(syncMessage(2, appDoc().edit((d) => d.getText('t').insert(0, 'after expiry'))));
    await ws.send(syncMessage(0, Y.encodeStateVector(new Y.Doc())));
    const answer = await ws.take((f) => f.opcode === 8 || isStep2(f));
    expect(answer?.opcode === 8 ? answer.payload.readUInt16BE(0) : 'handled').toBe(4401);
    skew = 0;
    const res = await fetch(`http://127.0.0.1:${p}/v1/docs/notes%2Fclock`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(404);
  });
});

describe('awareness from an app is bounded and cannot touch another app\'s presence', () => {
  /** The first close frame or sync step 2: the node either refused the messages before it, or handled them all. */
  const closeOrStep2 = (ws: RawWs) => ws.take((f) => f.opcode === 8 || isStep2(f));
  const askStep2 = (ws: RawWs) => ws.send(syncMessage(0, Y.encodeStateVector(new Y.Doc())));

  it('one message bringing in thousands of clientIDs closes the socket with 4400, and no other app sees them', async () => {
    const node = await testNode('aw');
    const watcher = await openDoc(node, 'notes/aw', await node.token(['read:notes/**']));
    const mallory = await openDoc(node, 'notes/aw', await node.token(['read:notes/**']));
    const flood = Array.from({ length: 5000 }, (_, i) => [100_000 + i, 1, '{"user":"ghost"}'] as const);
    await mallory.send(awarenessMessage(flood));
    await askStep2(mallory);
    const answer = await closeOrStep2(mallory);
    expect(answer?.opcode === 8 ? answer.payload.readUInt16BE(0) : 'handled').toBe(4400);
    expect((await awarenessSeenBy(watcher)).size).toBe(0);
  });

  it('an app may hold 16 clientIDs; the 17th, even across messages, closes it with 4400 and its states go', async () => {
    const node = await testNode('aw');
    const watcher = await openDoc(node, 'notes/aw', await node.token(['read:notes/**']));
    const app = await openDoc(node, 'notes/aw', await node.token(['read:notes/**']));
    for (let i = 0; i < 16; i++) await app.send(awarenessMessage([[500 + i, 1, `{"n":${i}}`]]));
    // Updating and removing its own clientIDs, and bringing one back, stays within the bound.
    await app.send(awarenessMessage([[500, 2, '{"n":"again"}'], [501, 2, 'null']]));
    await app.send(awarenessMessage([[501, 3, '{"n":"back"}']]));
    await roundTrip(app);
    const seen = await awarenessSeenBy(watcher);
    expect(seen.size).toBe(16);
    expect(seen.get(500)).toEqual({ n: 'again' });
    await app.send(awarenessMessage([[516, 1, '{"n":16}']]));
    await askStep2(app);
    const answer = await closeOrStep2(app);
    expect(answer?.opcode === 8 ? answer.payload.readUInt16BE(0) : 'handled').toBe(4400);
    await app.ended;
    expect((await awarenessSeenBy(watcher)).size).toBe(0);
  });

  it('an awareness state over 64 KiB closes the socket with 4413 and is not passed on', async () => {
    const node = await testNode('aw');
    const watcher = await openDoc(node, 'notes/aw', await node.token(['read:notes/**']));
    const app = await openDoc(node, 'notes/aw', await node.token(['read:notes/**']));
    await app.send(awarenessMessage([[700, 1, JSON.stringify({ avatar: 'x'.repeat(100_000) })]]));
    await askStep2(app);
    const answer = await closeOrStep2(app);
    expect(answer?.opcode === 8 ? answer.payload.readUInt16BE(0) : 'handled').toBe(4413);
    expect((await awarenessSeenBy(watcher)).has(700)).toBe(false);
  });

  it('a read-only app cannot overwrite or remove the presence of another app (a newer clock for its clientID)', async () => {
    const node = await testNode('aw');
    const watcher = await openDoc(node, 'notes/aw', await node.token(['read:notes/**']));
    const alice = await openDoc(node, 'notes/aw', await node.token());
    await alice.send(awarenessMessage([[4242, 1, '{"user":"alice"}']]));
    await roundTrip(alice);
    const mallory = await openDoc(node, 'notes/aw', await node.token(['read:notes/**']));
    await mallory.send(awarenessMessage([[4242, 7, '{"user":"mallory"}']]));
    await roundTrip(mallory);
    expect((await awarenessSeenBy(watcher)).get(4242)).toEqual({ user: 'alice' });
    await mallory.send(awarenessMessage([[4242, 9, 'null']]));
    await roundTrip(mallory);
    expect((await awarenessSeenBy(watcher)).get(4242)).toEqual({ user: 'alice' });
    // Alice's own updates still go through; once she leaves, her state goes.
    await alice.send(awarenessMessage([[4242, 2, '{"user":"alice","cursor":3}']]));
    await roundTrip(alice);
    expect((await awarenessSeenBy(watcher)).get(4242)).toEqual({ user: 'alice', cursor: 3 });
    alice.socket.destroy();
    await alice.ended;
    await waitUntil(async () => !(await awarenessSeenBy(watcher)).has(4242), { what: 'alice\'s state removed when she left' });
  });
});

describe('an app that stops reading', () => {
  it('is closed once what waits for it passes the bound, instead of the node holding every change for it', async () => {
    const node = await testNode('slow', { maxUpdateBytes: 256 * 1024, maxQueuedBytes: 1024 * 1024, durability: 'relaxed' });
    const reader = await openDoc(node, 'notes/slow', await node.token(['read:notes/**']));
    reader.socket.pause();
    // 64 changes of 200 KB each: 12.8 MB, beyond what loopback buffers hold and beyond maxQueuedBytes.
    const writer = appDoc();
    const total = 64;
    for (let i = 0; i < total; i++) {
      const update = writer.edit((d) => d.getMap('m').set(`k${i}`, randomBytes(100_000).toString('hex')));
      expect((await postUpdate(node, 'notes/slow', update)).status).toBe(200);
    }
    reader.socket.resume();
    let received = 0;
    let code: number | undefined;
    while (received < total) {
      const f = await reader.take((x) => x.opcode === 8 || (x.opcode === 2 && x.payload[0] === 0 && x.payload[1] === 2));
      if (!f) break;
      if (f.opcode === 8) {
        code = f.payload.readUInt16BE(0);
        break;
      }
      received++;
    }
    expect(received, 'changes delivered to the reader that did not read').toBeLessThan(total);
    await reader.ended;
    if (code !== undefined) expect(code).toBe(1013);
  }, 60_000);
});

describe('an SSE stream whose token expired by the node\'s clock', () => {
  it('ends at the next change instead of delivering it, even before the expiry timer fires', async () => {
    let skew = 0;
    const started = await startDaemon({ name: 'clock', now: () => Date.now() + skew });
    const identity = await readKeyFile(join(started.dir, 'identity.json'));
    const token = await issueApiToken(identity, { scopes: ['read:**'], ttlMs: 3_600_000 });
    const abort = new AbortController();
    onTestFinished(() => abort.abort());
    const res = await fetch(`${started.api}/v1/docs/notes%2Fclock/events`, { headers: { authorization: `Bearer ${token}` }, signal: abort.signal });
    expect(res.status).toBe(200);
    // The machine slept through the token's expiry; a change made after it (with a token valid by then) must not reach the stream.
    skew = 2 * 3_600_000;
    const writer = await issueApiToken(identity, { scopes: ['write:**'], ttlMs: 3_600_000, now: Date.now() + skew });
    const post = await fetch(`${started.api}/v1/docs/notes%2Fclock/updates`, { method: 'POST', headers: { authorization: `Bearer ${writer}` }, body: appDoc().edit((d) => d.getText('t').insert(0, 'later')) });
    expect(post.status).toBe(200);
    // Read until the stream ends or an event arrives, whichever comes first.
    const reader = res.body!.getReader();
    let body = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      body += new TextDecoder().decode(value);
      if (body.includes('event: change')) break;
    }
    expect(body).not.toContain('event: change');
  });
});

describe('tokens of another kind or another key, with every API claim right', () => {
  it('a handshake, envelope, grant or revocation typ signed by this node, and an API token signed by another key (with or without its jwk in the header): 401 and 4401', async () => {
    const { SignJWT, exportJWK } = await import('jose');
    const { generateKeyPair } = await import('../../src/identity/keys.js');
    const { Typ } = await import('../../src/tokens/typ.js');
    const node = await testNode('typ');
    const id = await readKeyFile(join(node.dir, 'identity.json'));
    const mallory = await generateKeyPair();
    const now = Math.floor(Date.now() / 1000);
    const claims = { scope: ['read:**', 'write:**'], iss: id.id, aud: id.id, sub: id.id, iat: now, exp: now + 600, jti: 'j1' };
    const sign = (typ: string, key = id.privateKey, extra: Record<string, unknown> = {}) => new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA', typ, ...extra }).sign(key);
    const cases: Record<string, string> = { control: await sign(Typ.api) };
    for (const kind of ['handshakeListener', 'handshakeDialler', 'envelope', 'grant', 'revocation'] as const) cases[kind] = await sign(Typ[kind]);
    cases.otherKey = await sign(Typ.api, mallory.privateKey);
    cases.otherKeyWithJwk = await sign(Typ.api, mallory.privateKey, { jwk: await exportJWK(mallory.publicKey) });
    const seen: Record<string, string> = {};
    for (const [label, token] of Object.entries(cases)) {
      const res = await fetch(`${node.api}/v1/docs/notes%2Ft/updates`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: appDoc().edit((d) => d.getText('t').insert(0, label)) });
      await res.arrayBuffer();
      const ws = await RawWs.open(port(node), `/v1/yjs/notes/t?token=${token}`);
      const first = await ws.take();
      seen[label] = `${res.status} ${first?.opcode === 8 ? `close ${first.payload.readUInt16BE(0)}` : 'open'}`;
    }
    expect(seen).toEqual(Object.fromEntries(Object.keys(cases).map((k) => [k, k === 'control' ? '200 open' : '401 close 4401'])));
  });
});
