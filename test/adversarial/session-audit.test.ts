/**
 * An audit of the peer session layer (DESIGN.md §3, §9; PROTOCOL.md §1-§4,
 * §7): what a hostile peer, listed or not, can do to a node before and after
 * authentication, beyond the attacks of handshake.test.ts. Real nodes, real
 * sockets on 127.0.0.1, real LevelDB folders.
 */
import { createHash } from 'node:crypto';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { generateKeyPair, type KeyPair } from '../../src/identity/keys.js';
import { Close } from '../../src/protocol/close-codes.js';
import { FrameCipher } from '../../src/protocol/frames.js';
import { deriveSessionKeys } from '../../src/protocol/handshake.js';
import { encodeMessage } from '../../src/protocol/messages.js';
import type { NodeId } from '../../src/types.js';
import { authority, grantFor } from '../helpers/authority.js';
import { entryFor, setPeers } from '../helpers/cluster.js';
import { waitUntil } from '../helpers/wait.js';
import { arena, enterSession, expectClose, expectNoSession, expectUndisturbed, listed, ready, startDial, within, type Arena } from './arena.js';
import {
  ClosedError,
  RawPeer,
  emptyGrants,
  finishAsDialler,
  listenerReply,
  m3Claims,
  m3Header,
  makeHello,
  sha256,
  sign,
  type HelloParts,
  type ListenerReply,
  upgradeRequest,
} from './raw-peer.js';

// ------------------------------------------------------------------ a WebSocket spoken byte by byte

/** One WebSocket frame header: FIN, `opcode`, the length in its longest form, and a zero mask key when `masked` (a client's). */
function frameHeader(opcode: number, length: number, masked: boolean): Buffer {
  const h = Buffer.alloc(10 + (masked ? 4 : 0));
  h[0] = 0x80 | opcode;
  h[1] = (masked ? 0x80 : 0) | 127;
  h.writeBigUInt64BE(BigInt(length), 2);
  return h;
}

const frame = (opcode: number, payload: Uint8Array, masked: boolean) => Buffer.concat([frameHeader(opcode, payload.byteLength, masked), payload]);

/** Parses whole frames off the front of `buf` (after the HTTP head); returns them and what is left. */
function parseFrames(buf: Buffer): { frames: { opcode: number; payload: Buffer }[]; rest: Buffer } {
  const frames: { opcode: number; payload: Buffer }[] = [];
  for (;;) {
    if (buf.length < 2) break;
    const masked = (buf[1]! & 0x80) !== 0;
    let len = buf[1]! & 0x7f;
    let at = 2;
    if (len === 126) {
      if (buf.length < 4) break;
      len = buf.readUInt16BE(2);
      at = 4;
    } else if (len === 127) {
      if (buf.length < 10) break;
      len = Number(buf.readBigUInt64BE(2));
      at = 10;
    }
    const mask = masked ? buf.subarray(at, at + 4) : undefined;
    if (masked) at += 4;
    if (buf.length < at + len) break;
    const payload = Buffer.from(buf.subarray(at, at + len));
    if (mask) for (let i = 0; i < payload.length; i++) payload[i]! ^= mask[i % 4]!;
    frames.push({ opcode: buf[0]! & 0x0f, payload });
    buf = buf.subarray(at + len);
  }
  return { frames, rest: buf };
}

/**
 * A WebSocket end over a bare TCP socket, with no WebSocket library: it never
 * answers a close, so it can go on sending after the other end refused it,
 * as a hostile peer would. As a client it masks what it sends; as a server it
 * answers the upgrade request itself.
 */
class WireEnd {
  readonly socket: Socket;
  readonly frames: { opcode: number; payload: Buffer }[] = [];
  readonly closed: Promise<void>;
  readonly #role: 'client' | 'server';
  #buf: Buffer = Buffer.alloc(0);
  #head = true;
  #wake: (() => void) | undefined;

  constructor(socket: Socket, role: 'client' | 'server') {
    this.socket = socket;
    this.#role = role;
    onTestFinished(() => void socket.destroy());
    socket.on('error', () => undefined);
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (d: Buffer) => this.#read(d));
  }

  /** A client connection to a node's peer port, upgraded (optionally without the tessera.v1 subprotocol). */
  static async dial(port: number, subprotocol = true): Promise<WireEnd> {
    const socket = connect(port, '127.0.0.1');
    const end = new WireEnd(socket, 'client');
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    socket.write(upgradeRequest(port, subprotocol));
    return end;
  }

  #read(d: Buffer): void {
    this.#buf = Buffer.concat([this.#buf, d]);
    if (this.#head) {
      const end = this.#buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      if (this.#role === 'server') this.#accept(this.#buf.subarray(0, end).toString('latin1'));
      this.#buf = this.#buf.subarray(end + 4);
      this.#head = false;
    }
    const { frames, rest } = parseFrames(this.#buf);
    this.#buf = rest;
    this.frames.push(...frames);
    this.#wake?.();
  }

  #accept(request: string): void {
    const key = /^sec-websocket-key:\s*(.+)$/im.exec(request)![1]!.trim();
    const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    this.socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Protocol: tessera.v1\r\n\r\n`);
  }

  /** The first frame (already here or to come) with `opcode`. */
  async waitFor(opcode: number): Promise<{ opcode: number; payload: Buffer }> {
    for (;;) {
      const f = this.frames.find((x) => x.opcode === opcode);
      if (f) return f;
      if (this.socket.destroyed) throw new Error(`connection gone before a frame with opcode ${opcode}`);
      await within(new Promise<void>((r) => (this.#wake = r)), 15_000, `no frame with opcode ${opcode} within 15 s`);
    }
  }

  /** The code of the close frame the other end sent. */
  async closeCode(): Promise<number> {
    return (await this.waitFor(0x8)).payload.readUInt16BE(0);
  }

  send(opcode: number, payload: Uint8Array): void {
    this.socket.write(frame(opcode, payload, this.#role === 'client'));
  }

  /**
   * Announces one binary frame of `total` bytes and streams it, as fast as
   * the other end reads, until it is all sent or the other end drops the
   * connection. Resolves with the bytes handed to the socket.
   */
  async stream(total: number): Promise<number> {
    this.socket.write(frameHeader(0x2, total, this.#role === 'client'));
    const chunk = Buffer.alloc(256 * 1024, 0x61);
    let sent = 0;
    const gone = this.closed.then(() => 'gone' as const);
    while (sent < total && !this.socket.destroyed) {
      const n = Math.min(chunk.length, total - sent);
      const more = this.socket.write(n === chunk.length ? chunk : chunk.subarray(0, n));
      sent += n;
      if (!more && (await Promise.race([new Promise<'drain'>((r) => this.socket.once('drain', () => r('drain'))), gone])) === 'gone') break;
    }
    return sent;
  }
}

/** A bare TCP server on 127.0.0.1:0 that upgrades every connection by hand. */
async function wireListener(): Promise<{ url: string; next: Promise<WireEnd> }> {
  let first: (e: WireEnd) => void;
  const next = new Promise<WireEnd>((r) => (first = r));
  const server = createServer((socket) => first(new WireEnd(socket, 'server')));
  onTestFinished(() => new Promise<void>((r) => server.close(() => r())));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}`, next };
}

/**
 * The node is configured with a 256 MiB maxFrameBytes, so that what a peer
 * streams after its refusal is far more than the kernel's socket buffers can
 * absorb on their own (a few tens of MiB on loopback): if all of it goes
 * through, the node read it, and held it, since its WebSocket layer buffers a
 * frame until it is complete.
 */
const BIG = 256 * 1024 * 1024;
const STREAM = 240 * 1024 * 1024;

/** The peer could not push the whole frame: the node dropped the connection instead of reading on. */
async function expectCutOff(end: WireEnd, sent: number): Promise<void> {
  expect(sent, `the node read all ${STREAM} bytes a refused peer streamed`).toBeLessThan(STREAM);
  await within(end.closed, 15_000, 'the node kept the refused connection open');
}

// ------------------------------------------------------------------ helpers for hand-made handshakes

/** Message 3 for `reply`, signed by `self` (honest unless `claims` override). */
async function m3For(self: KeyPair, to: string, reply: ListenerReply, claims: Record<string, unknown> = {}): Promise<string> {
  return sign(m3Header(self.publicJwk), m3Claims(self, to, reply, claims), self.privateKey);
}

/** The dialler's sealing cipher once message 3 is sent. */
function diallerSeal(hello: HelloParts, reply: ListenerReply, m3: string): FrameCipher {
  const keys = deriveSessionKeys(hello.ephemeral, String(reply.claims.epk), sha256(reply.th2, Buffer.from(m3)));
  return new FrameCipher(keys.d2l);
}

const handshakesOk = (a: Arena) => a.target.daemon.peerManager.handshakes.get('ok') ?? 0;

// ================================================================== tests

describe('a connection refused before authentication cannot make the node read on', () => {
  it('a stranger refused at its hello (4004) cannot then stream a whole frame into the node', async () => {
    const a = await arena({ maxFrameBytes: BIG });
    const end = await WireEnd.dial(a.target.daemon.peerAddress.port);
    end.send(0x1, makeHello((await generateKeyPair()).id, a.target.id).bytes);
    expect(await end.closeCode()).toBe(Close.unknownPeer.code);
    await expectCutOff(end, await end.stream(STREAM));
    await expectUndisturbed(a);
  });

  it('a listed peer whose message 3 is refused (4006) cannot then stream a whole frame into the node', async () => {
    const a = await arena({ maxFrameBytes: BIG });
    const end = await WireEnd.dial(a.target.daemon.peerAddress.port);
    const hello = makeHello(a.mallory.id, a.target.id);
    end.send(0x1, hello.bytes);
    const m2 = (await end.waitFor(0x1)).payload;
    const reply = { token: m2.toString('utf8'), bytes: m2, claims: JSON.parse(Buffer.from(m2.toString().split('.')[1]!, 'base64url').toString()) as Record<string, unknown>, header: {}, th2: sha256(hello.th1, m2) };
    const evil = await generateKeyPair();
    end.send(0x1, Buffer.from(await sign(m3Header(a.mallory.publicJwk), m3Claims(a.mallory, a.target.id, reply), evil.privateKey)));
    expect(await end.closeCode()).toBe(Close.badToken.code);
    await expectCutOff(end, await end.stream(STREAM));
    await expectNoSession(a, a.mallory.id);
    await expectUndisturbed(a);
  });

  it('a connection refused at the upgrade as busy (4015) cannot stream a whole frame into the node', async () => {
    const a = await arena({ maxFrameBytes: BIG, maxUnauthenticated: 1, maxUnauthenticatedPerAddress: 64 });
    await RawPeer.connect(a.target.url); // holds the one unauthenticated slot
    const end = await WireEnd.dial(a.target.daemon.peerAddress.port);
    expect(await end.closeCode()).toBe(Close.busy.code);
    await expectCutOff(end, await end.stream(STREAM));
    await expectUndisturbed(a);
  });

  it('a connection refused for want of the tessera.v1 subprotocol (4001) cannot stream a whole frame, and is dropped', async () => {
    const a = await arena({ maxFrameBytes: BIG });
    const end = await WireEnd.dial(a.target.daemon.peerAddress.port, false);
    expect(await end.closeCode()).toBe(Close.handshakeInvalid.code);
    await expectCutOff(end, await end.stream(STREAM));
    await expectUndisturbed(a);
  });

  it('a hostile listener whose message 2 the dialling node refuses (4006) cannot then stream a whole frame into it', async () => {
    const fake = await generateKeyPair();
    const listener = await wireListener();
    const a = await arena({ maxFrameBytes: BIG }, [listed('fake', fake, listener.url)]);
    const end = await listener.next;
    const m1 = (await end.waitFor(0x1)).payload;
    end.send(0x1, Buffer.from((await listenerReply(fake, m1, { key: (await generateKeyPair()).privateKey })).token));
    expect(await end.closeCode()).toBe(Close.badToken.code);
    await expectCutOff(end, await end.stream(STREAM));
    expect(a.target.daemon.peerManager.session(fake.id)).toBeUndefined();
    await expectUndisturbed(a);
  });
});

describe('admission by grant', () => {
  /** An arena whose target also trusts an authority, so that unlisted diallers get as far as presenting a grant. */
  async function grantArena(config: Record<string, unknown>) {
    const admin = await authority();
    const a = await arena(config);
    await setPeers(a.target, [entryFor(a.honest), listed('mallory', a.mallory)], [admin.entry]);
    return { a, admin };
  }

  /** Dials as `self` (unlisted), completes the handshake up to message 3, and waits until the node verified it. */
  async function handshakeOnly(a: Arena, self: KeyPair) {
    const before = handshakesOk(a);
    const { peer, hello, reply } = await startDial(a, self);
    const m3 = await m3For(self, a.target.id, reply);
    peer.text(m3);
    await waitUntil(() => handshakesOk(a) > before, { what: 'the node verified message 3' });
    return { peer, seal: diallerSeal(hello, reply, m3), m3 };
  }

  it('a stranger that signs its handshake with a key of its own holds its unauthenticated slot until it shows a grant (4015 for the next)', async () => {
    const { a, admin } = await grantArena({ maxUnauthenticated: 2, maxUnauthenticatedPerAddress: 64 });
    const strangers = [await generateKeyPair(), await generateKeyPair()];
    const pending = [await handshakeOnly(a, strangers[0]!), await handshakeOnly(a, strangers[1]!)];

    // Both slots are still taken: nobody has shown the node anything but a key it made up.
    const third = await RawPeer.connect(a.target.url);
    third.text(makeHello((await generateKeyPair()).id, a.target.id).bytes);
    const refused = await third.next().then(
      (m) => `the node answered with a ${m.isBinary ? 'binary' : 'text'} message`,
      (err: unknown) => (err instanceof ClosedError ? err.closed.code : String(err)),
    );
    expect(refused).toBe(Close.busy.code);

    // A grants message without a valid grant: refused (4019), and its slot comes back.
    pending[0]!.peer.binary(pending[0]!.seal.seal(encodeMessage(emptyGrants)));
    await expectClose(pending[0]!.peer, Close.grantRequired.code);
    // A valid grant: admitted, and its slot comes back too.
    const grant = await grantFor(admin, { id: strangers[1]!.id, publicKey: strangers[1]!.publicJwk });
    pending[1]!.peer.binary(pending[1]!.seal.seal(encodeMessage({ type: 'grants', grants: [grant], revocations: [] })));
    await waitUntil(() => ready(a.target.daemon.peerManager.session(strangers[1]!.id as NodeId)), { what: 'the granted stranger is kept' });

    const fourth = await RawPeer.connect(a.target.url);
    fourth.text(makeHello(a.mallory.id, a.target.id).bytes);
    expect((await fourth.next()).isBinary).toBe(false); // message 2: it got a slot
    await expectUndisturbed(a, { secrets: [grant, ...pending.map((p) => p.m3)] });
  });
});

describe('frames around the handshake', () => {
  it('the node\'s own first frame, reflected back to it, does not open (4016): each direction has its own key', async () => {
    const a = await arena();
    const { peer, reply } = await startDial(a, a.mallory);
    peer.text(await m3For(a.mallory, a.target.id, reply));
    const first = await peer.next();
    expect(first.isBinary).toBe(true);
    peer.binary(first.data);
    await expectClose(peer, Close.frameInvalid.code);
    await expectNoSession(a, a.mallory.id);
    await expectUndisturbed(a);
  });

  it('a frame sealed for one session does not open in the next session of the same pair (4016): keys are fresh per handshake', async () => {
    const a = await arena();
    const first = await startDial(a, a.mallory);
    const m3a = await m3For(a.mallory, a.target.id, first.reply);
    first.peer.text(m3a);
    const old = diallerSeal(first.hello, first.reply, m3a).seal(encodeMessage(emptyGrants));
    first.peer.ws.terminate();

    const again = await startDial(a, a.mallory);
    again.peer.text(await m3For(a.mallory, a.target.id, again.reply));
    again.peer.binary(old); // counter 0 both times: only the key differs
    await expectClose(again.peer, Close.frameInvalid.code);
    await expectNoSession(a, a.mallory.id);
    await expectUndisturbed(a);
  });

  it('a text message right after message 3, before any frame, is a protocol error (4018), as it is later in the session', async () => {
    const a = await arena();
    const { peer, reply } = await startDial(a, a.mallory);
    peer.text(await m3For(a.mallory, a.target.id, reply));
    peer.text('{"type":"grants","grants":[],"revocations":[]}');
    await expectClose(peer, Close.protocolError.code);
    await expectNoSession(a, a.mallory.id);
    await expectUndisturbed(a);
  });
});

describe('replay and binding across nodes', () => {
  it('a message 3 for one node, replayed at another node that lists the same dialler, is refused (4006)', async () => {
    const a = await arena();
    await setPeers(a.honest, [entryFor(a.target, { dial: false }), listed('mallory', a.mallory)]);
    const toTarget = await startDial(a, a.mallory);
    const m3 = await m3For(a.mallory, a.target.id, toTarget.reply);
    toTarget.peer.ws.terminate(); // captured, never delivered

    const peer = await RawPeer.connect(a.honest.url);
    const hello = makeHello(a.mallory.id, a.honest.id);
    peer.text(hello.bytes);
    await peer.next();
    peer.text(m3);
    await expectClose(peer, Close.badToken.code);
    expect(a.honest.daemon.peerManager.session(a.mallory.id)).toBeUndefined();
    await expectUndisturbed(a, { secrets: [m3] });
  });
});

describe('sessions and the peers file', () => {
  it('a peer removed from the peers file while its handshake is in flight is not kept (4010), and cannot come back', async () => {
    const a = await arena();
    const { peer, hello, reply } = await startDial(a, a.mallory);
    await setPeers(a.target, [entryFor(a.honest)]); // mallory removed between message 2 and message 3
    const m3 = await m3For(a.mallory, a.target.id, reply);
    peer.text(m3);
    const s = await finishAsDialler(peer, hello, reply, m3);
    s.peer.binary(s.seal.seal(encodeMessage(emptyGrants)));
    await expectClose(peer, Close.peerRemoved.code);
    await expectNoSession(a, a.mallory.id);

    const again = await RawPeer.connect(a.target.url);
    again.text(makeHello(a.mallory.id, a.target.id).bytes);
    await expectClose(again, Close.unknownPeer.code);
    await expectUndisturbed(a);
  });

  it('a peer that asks for a shorter session lifetime (sttl) gets it: the node ends the session at min(its own, the peer\'s) with 4012', async () => {
    const a = await arena(); // sessionTtl 1h
    const { peer, hello, reply } = await startDial(a, a.mallory);
    const m3 = await m3For(a.mallory, a.target.id, reply, { sttl: 1 });
    peer.text(m3);
    const s = await finishAsDialler(peer, hello, reply, m3);
    const kept = await enterSession(a, s, a.mallory);
    expect(kept.expiresAt - kept.establishedAt).toBeLessThanOrEqual(1000 + 50);
    await expectClose(peer, Close.sessionExpired.code);
    await expectUndisturbed(a);
  });
});

describe('TCP connections that never ask for their upgrade', () => {
  it('beyond four times the handshake caps from one address are closed at once, not held until the header timeout; the honest session stays', async () => {
    // Caps of 4 in all and 2 per address: at most 8 idle connections from 127.0.0.1 are held.
    const a = await arena({ maxUnauthenticated: 4, maxUnauthenticatedPerAddress: 2, handshakeTimeout: '60s' });
    const port = a.target.daemon.peerAddress.port;
    const sockets = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const socket = connect(port, '127.0.0.1');
        onTestFinished(() => void socket.destroy());
        socket.on('error', () => undefined);
        const closed = { at: undefined as number | undefined };
        socket.once('close', () => (closed.at = Date.now()));
        await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
        return closed;
      }),
    );
    await waitUntil(() => sockets.filter((s) => s.at !== undefined).length >= 12, { what: 'the node to close the connections over its cap' });
    // The eight it holds stay open until the header timeout (60 s here), so none of them closes meanwhile.
    await new Promise((r) => setTimeout(r, 300));
    expect(sockets.filter((s) => s.at === undefined)).toHaveLength(8);
    expect(a.target.daemon.peerManager.handshakes.get('connection_limit')).toBe(12);
    await expectUndisturbed(a);
  });
});
