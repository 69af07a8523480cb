/**
 * A hand-driven Tessera peer for adversarial tests: a raw `ws` socket with a
 * message queue, and the handshake built piece by piece so that any part of
 * it can be forged, flipped, replayed or withheld. The honest parts (key
 * derivation, framing) use the project's pure functions; every token and the
 * hello are built here by hand.
 */
import { createHash, generateKeyPairSync, randomBytes, sign as edSign, type KeyObject } from 'node:crypto';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { SignJWT, type JWTHeaderParameters } from 'jose';
import { onTestFinished } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import type { KeyPair } from '../../src/identity/keys.js';
import { FrameCipher } from '../../src/protocol/frames.js';
import { deriveSessionKeys } from '../../src/protocol/handshake.js';
import { decodeMessage, encodeMessage, type SessionMessage } from '../../src/protocol/messages.js';
import { Typ } from '../../src/tokens/typ.js';
import type { PublicJwk } from '../../src/types.js';

export const SUBPROTOCOL = 'tessera.v1';

export interface Closed {
  readonly code: number;
  readonly reason: string;
}

export interface Incoming {
  readonly data: Buffer;
  readonly isBinary: boolean;
}

/** The socket closed while a test waited for a message. */
export class ClosedError extends Error {
  readonly closed: Closed;
  constructor(closed: Closed) {
    super(`socket closed: ${closed.code} ${closed.reason}`);
    this.closed = closed;
  }
}

/** One WebSocket, either end, with its messages queued and its close recorded. */
export class RawPeer {
  readonly ws: WebSocket;
  readonly closed: Promise<Closed>;
  readonly errors: Error[] = [];
  #closedWith: Closed | undefined;
  readonly #queue: Incoming[] = [];
  readonly #waiters: { resolve: (m: Incoming) => void; reject: (e: Error) => void }[] = [];

  constructor(ws: WebSocket) {
    this.ws = ws;
    onTestFinished(() => ws.terminate());
    ws.on('error', (err) => this.errors.push(err));
    ws.on('message', (data, isBinary) => {
      const m = { data: Buffer.isBuffer(data) ? data : Buffer.from(data as ArrayBuffer), isBinary };
      const w = this.#waiters.shift();
      if (w) w.resolve(m);
      else this.#queue.push(m);
    });
    this.closed = new Promise<Closed>((resolve) => {
      ws.once('close', (code, reason) => {
        this.#closedWith = { code, reason: reason.toString() };
        for (const w of this.#waiters.splice(0)) w.reject(new ClosedError(this.#closedWith));
        resolve(this.#closedWith);
      });
    });
  }

  /** Opens a client socket to a node's peer listener, as a Tessera dialler would. */
  static async connect(url: string, protocol: string | null = SUBPROTOCOL): Promise<RawPeer> {
    const ws = new WebSocket(url, protocol === null ? [] : [protocol], { perMessageDeflate: false, followRedirects: false });
    const peer = new RawPeer(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode} instead of an upgrade`)));
    });
    return peer;
  }

  get closedWith(): Closed | undefined {
    return this.#closedWith;
  }

  /** The next message; rejects with ClosedError if the socket closes first. */
  next(timeoutMs = 15_000): Promise<Incoming> {
    const q = this.#queue.shift();
    if (q) return Promise.resolve(q);
    if (this.#closedWith) return Promise.reject(new ClosedError(this.#closedWith));
    return new Promise<Incoming>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no message within ${timeoutMs}ms`)), timeoutMs);
      this.#waiters.push({
        resolve: (m) => (clearTimeout(timer), resolve(m)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
    });
  }

  /** The close the other end sent, waiting at most `timeoutMs` (a generous bound, not a deadline under test). */
  closeWithin(timeoutMs = 15_000): Promise<Closed> {
    return Promise.race([
      this.closed,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`socket still open after ${timeoutMs}ms`)), timeoutMs).unref()),
    ]);
  }

  text(s: string | Uint8Array): void {
    this.ws.send(typeof s === 'string' ? s : Buffer.from(s), { binary: false });
  }

  binary(b: Uint8Array): void {
    this.ws.send(b, { binary: true });
  }

  /** Writes bytes straight to the TCP socket, under the WebSocket framing. */
  rawWrite(bytes: Uint8Array): void {
    (this.ws as unknown as { _socket: { write(b: Uint8Array): void } })._socket.write(bytes);
  }
}

/** The header of a masked client frame (mask key 0, so the payload goes as is) announcing `length` bytes. */
export function clientFrameHeader(opcode: number, length: number): Buffer {
  const h = Buffer.alloc(2 + 8 + 4);
  h[0] = 0x80 | opcode;
  h[1] = 0x80 | 127;
  h.writeBigUInt64BE(BigInt(length), 2);
  return h; // the last 4 bytes are the zero mask key
}

// ---------------------------------------------------------------- raw TCP

/** A WebSocket upgrade request for the peer port, offering tessera.v1 (unless `subprotocol` is false). */
export function upgradeRequest(port: number, subprotocol = true): string {
  return [
    'GET / HTTP/1.1',
    `Host: 127.0.0.1:${port}`,
    'Upgrade: websocket',
    'Connection: Upgrade',
    `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
    'Sec-WebSocket-Version: 13',
    ...(subprotocol ? [`Sec-WebSocket-Protocol: ${SUBPROTOCOL}`] : []),
    '',
    '',
  ].join('\r\n');
}

export interface TcpResult {
  /** Everything the node sent. */
  readonly received: Buffer;
  /** The code of the first close frame the node sent after its 101, if any. */
  readonly closeCode: number | undefined;
}

/**
 * A bare TCP connection to `port` that writes `bytes` (in one write) and
 * resolves, when the node closes it, with what came back. Registered for
 * teardown at creation.
 */
export async function tcpExchange(port: number, bytes: Uint8Array | string): Promise<{ socket: Socket; done: Promise<TcpResult> }> {
  const socket = connect(port, '127.0.0.1');
  onTestFinished(() => void socket.destroy());
  socket.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const chunks: Buffer[] = [];
  socket.on('data', (d: Buffer) => chunks.push(d));
  const done = new Promise<TcpResult>((resolve) =>
    socket.once('close', () => {
      const received = Buffer.concat(chunks);
      const body = received.indexOf('\r\n\r\n');
      const frame = body < 0 ? undefined : received.subarray(body + 4);
      const closeCode = frame && frame.length >= 4 && (frame[0]! & 0x0f) === 0x8 ? frame.readUInt16BE(2) : undefined;
      resolve({ received, closeCode });
    }),
  );
  socket.write(bytes);
  return { socket, done };
}

// ---------------------------------------------------------------- handshake

export const b64u = (b: Uint8Array): string => Buffer.from(b).toString('base64url');
const sha256 = (...parts: Uint8Array[]): Buffer => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};
export const nowS = (): number => Math.floor(Date.now() / 1000);

export interface HelloParts {
  readonly from: string;
  readonly to: string;
  readonly bytes: Buffer;
  readonly ephemeral: KeyObject;
  readonly epk: string;
  readonly nonce: string;
  /** SHA-256 of message 1. */
  readonly th1: Buffer;
}

/** Message 1, built by hand as PROTOCOL.md describes it. */
export function makeHello(from: string, to: string, fields: Partial<Record<'epk' | 'nonce', string>> = {}): HelloParts {
  const { publicKey, privateKey } = generateKeyPairSync('x25519');
  const epk = fields.epk ?? String(publicKey.export({ format: 'jwk' }).x);
  const nonce = fields.nonce ?? b64u(randomBytes(32));
  const bytes = Buffer.from(JSON.stringify({ type: 'hello', v: 1, from, to, epk, nonce }));
  return { from, to, bytes, ephemeral: privateKey, epk, nonce, th1: sha256(bytes) };
}

export interface ListenerReply {
  readonly token: string;
  readonly bytes: Buffer;
  readonly claims: Record<string, unknown>;
  readonly header: Record<string, unknown>;
  /** SHA-256(th1 || message 2), as the dialler computes it. */
  readonly th2: Buffer;
}

/** Splits a compact JWS into its decoded header and claims (no verification). */
export function decodeParts(token: string): { header: Record<string, unknown>; claims: Record<string, unknown> } {
  const [h, p] = token.split('.');
  return {
    header: JSON.parse(Buffer.from(h!, 'base64url').toString('utf8')) as Record<string, unknown>,
    claims: JSON.parse(Buffer.from(p!, 'base64url').toString('utf8')) as Record<string, unknown>,
  };
}

/** Reads message 2 and computes th2 from the dialler's own view of message 1. */
export async function readReply(peer: RawPeer, hello: HelloParts): Promise<ListenerReply> {
  const m = await peer.next();
  if (m.isBinary) throw new Error('message 2 arrived as a binary frame');
  const token = m.data.toString('utf8');
  return { token, bytes: m.data, ...decodeParts(token), th2: sha256(hello.th1, m.data) };
}

/** The claims of an honest message 3 for this reply; `overrides` replace or (with undefined) remove claims. */
export function m3Claims(self: KeyPair, to: string, reply: ListenerReply, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const iat = nowS();
  const claims: Record<string, unknown> = {
    nonce: reply.claims.snonce,
    th: b64u(reply.th2),
    sttl: 3600,
    iss: self.id,
    aud: to,
    iat,
    exp: iat + 60,
    jti: b64u(randomBytes(16)),
    ...overrides,
  };
  for (const [k, v] of Object.entries(overrides)) if (v === undefined) delete claims[k];
  return claims;
}

/** The protected header of an honest message 3 (EdDSA, the dialler typ, the dialler's public key). */
export function m3Header(jwk: PublicJwk, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return { alg: 'EdDSA', typ: Typ.handshakeDialler, jwk: { kty: 'OKP', crv: 'Ed25519', x: jwk.x }, ...overrides };
}

/** Signs any header and claims with jose (which adds nothing of its own). */
export function sign(header: Record<string, unknown>, claims: Record<string, unknown>, key: KeyObject | Uint8Array): Promise<string> {
  return new SignJWT(claims).setProtectedHeader(header as unknown as JWTHeaderParameters).sign(key);
}

/**
 * Signs any header and claims with Ed25519 by hand (node:crypto), for headers
 * jose refuses to produce (an unknown `crit`, say).
 */
export function signRaw(header: Record<string, unknown>, claims: Record<string, unknown>, key: KeyObject): string {
  const input = `${b64u(Buffer.from(JSON.stringify(header)))}.${b64u(Buffer.from(JSON.stringify(claims)))}`;
  return `${input}.${b64u(edSign(null, Buffer.from(input), key))}`;
}

/** A compact JWS with any header and an empty signature (`alg: none`). */
export function unsigned(header: Record<string, unknown>, claims: Record<string, unknown>): string {
  return `${b64u(Buffer.from(JSON.stringify(header)))}.${b64u(Buffer.from(JSON.stringify(claims)))}.`;
}

/** Flips bit `bit` of byte `index`. */
export function flipBit(bytes: Uint8Array, index: number, bit = 0): Buffer {
  const out = Buffer.from(bytes);
  out[index]! ^= 1 << bit;
  return out;
}

const B64U_CHAR = /^[A-Za-z0-9_-]$/;

export interface BitPosition {
  readonly index: number;
  readonly bit: number;
}

/**
 * The first bit, in the string value of `key` in the JSON `text`, whose flip
 * gives a base64url character (`stayValid`) or a printable character outside
 * that alphabet (otherwise). The JSON stays valid either way.
 */
export function flipPositionInValue(text: string, key: string, stayValid = true): BitPosition {
  const start = text.indexOf(`"${key}":"`);
  if (start < 0) throw new Error(`no string member ${key}`);
  for (let index = start + key.length + 4; text[index] !== '"'; index++) {
    for (let bit = 0; bit < 7; bit++) {
      const code = text.charCodeAt(index) ^ (1 << bit);
      const c = String.fromCharCode(code);
      if (code >= 0x20 && code < 0x7f && c !== '"' && c !== '\\' && B64U_CHAR.test(c) === stayValid) return { index, bit };
    }
  }
  throw new Error(`no suitable bit in ${key}`);
}

/** Flips one bit inside a member's string value of a JWS's header (segment 0) or claims (segment 1), keeping its JSON valid. */
export function flipInJwsMember(token: string, segment: 0 | 1, key: string): string {
  const parts = token.split('.');
  const text = Buffer.from(parts[segment]!, 'base64url').toString('utf8');
  const { index, bit } = flipPositionInValue(text, key);
  parts[segment] = b64u(flipBit(Buffer.from(text), index, bit));
  return parts.join('.');
}

/** Flips one bit of a JWS's decoded signature. */
export function flipInSignature(token: string, index = 10): string {
  const parts = token.split('.');
  parts[2] = b64u(flipBit(Buffer.from(parts[2]!, 'base64url'), index));
  return parts.join('.');
}

export interface RawSession {
  readonly peer: RawPeer;
  readonly hello: HelloParts;
  readonly reply: ListenerReply;
  readonly m3: string;
  /** Seals frames this side sends (dialler → listener). */
  readonly seal: FrameCipher;
  /** Opens frames the node sends (listener → dialler). */
  readonly open: FrameCipher;
  /** The node's first encrypted message (its grants). */
  readonly first: SessionMessage;
}

/** Message 3 is sent; derives the keys the way both ends must, and reads the node's first encrypted frame. */
export async function finishAsDialler(peer: RawPeer, hello: HelloParts, reply: ListenerReply, m3: string): Promise<RawSession> {
  const th3 = sha256(reply.th2, Buffer.from(m3));
  const keys = deriveSessionKeys(hello.ephemeral, String(reply.claims.epk), th3);
  const open = new FrameCipher(keys.l2d);
  const frame = await peer.next();
  if (!frame.isBinary) throw new Error('the first frame after message 3 is not binary');
  const first = decodeMessage(open.open(frame.data));
  return { peer, hello, reply, m3, seal: new FrameCipher(keys.d2l), open, first };
}

/**
 * A complete, honest handshake as a dialler holding `self` (which the node
 * must list), up to the node's grants frame. Our own grants are not sent.
 */
export async function honestDial(url: string, self: KeyPair, to: string, claims: Record<string, unknown> = {}): Promise<RawSession> {
  const peer = await RawPeer.connect(url);
  const hello = makeHello(self.id, to);
  peer.text(hello.bytes);
  const reply = await readReply(peer, hello);
  const m3 = await sign(m3Header(self.publicJwk), m3Claims(self, to, reply, claims), self.privateKey);
  peer.text(m3);
  return finishAsDialler(peer, hello, reply, m3);
}

export const emptyGrants: SessionMessage = { type: 'grants', grants: [], revocations: [] };

/** Encodes and seals a session message with the dialler's cipher. */
export function sealMessage(s: RawSession, message: SessionMessage = emptyGrants): Buffer {
  return s.seal.seal(encodeMessage(message));
}

// ----------------------------------------------------------- fake listener

export interface FakeListener {
  readonly url: string;
  /** The next connection a node makes to it. */
  nextConnection(timeoutMs?: number): Promise<RawPeer>;
}

/** A bare WebSocket server on 127.0.0.1:0 that speaks tessera.v1 only as far as the test drives it. */
export async function fakeListener(): Promise<FakeListener> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, handleProtocols: (p) => (p.has(SUBPROTOCOL) ? SUBPROTOCOL : false) });
  onTestFinished(
    () =>
      new Promise<void>((resolve) => {
        for (const c of wss.clients) c.terminate();
        wss.close(() => resolve());
      }),
  );
  await new Promise<void>((resolve, reject) => {
    wss.once('listening', () => resolve());
    wss.once('error', reject);
  });
  const queue: RawPeer[] = [];
  const waiters: ((p: RawPeer) => void)[] = [];
  wss.on('connection', (ws) => {
    const p = new RawPeer(ws);
    const w = waiters.shift();
    if (w) w(p);
    else queue.push(p);
  });
  return {
    url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`,
    nextConnection: (timeoutMs = 15_000) => {
      const q = queue.shift();
      if (q) return Promise.resolve(q);
      return new Promise<RawPeer>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no connection within ${timeoutMs}ms`)), timeoutMs);
        waiters.push((p) => (clearTimeout(timer), resolve(p)));
      });
    },
  };
}

export interface ForgedReply {
  readonly token: string;
  readonly ephemeral: KeyObject;
  readonly snonce: string;
  readonly epk: string;
  /** SHA-256(SHA-256(m1) || message 2). */
  readonly th2: Buffer;
  readonly hello: Record<string, string>;
}

/**
 * Message 2 from `self` (a fake listener) answering the hello bytes `m1`:
 * honest unless `claims` or `header` override parts, `key` signs instead of
 * `self`'s key, or `forge` builds the token itself.
 */
export async function listenerReply(
  self: KeyPair,
  m1: Buffer,
  opts: {
    claims?: Record<string, unknown>;
    header?: Record<string, unknown>;
    key?: KeyObject;
    forge?: (header: Record<string, unknown>, claims: Record<string, unknown>) => string;
  } = {},
): Promise<ForgedReply> {
  const hello = JSON.parse(m1.toString('utf8')) as Record<string, string>;
  const { publicKey, privateKey } = generateKeyPairSync('x25519');
  const snonce = b64u(randomBytes(32));
  const iat = nowS();
  const claims: Record<string, unknown> = {
    nonce: hello.nonce,
    epk: String(publicKey.export({ format: 'jwk' }).x),
    snonce,
    th: b64u(sha256(m1)),
    sttl: 3600,
    iss: self.id,
    aud: hello.from,
    iat,
    exp: iat + 60,
    jti: b64u(randomBytes(16)),
    ...opts.claims,
  };
  const header = { alg: 'EdDSA', typ: Typ.handshakeListener, ...opts.header };
  const token = opts.forge ? opts.forge(header, claims) : await sign(header, claims, opts.key ?? self.privateKey);
  return { token, ephemeral: privateKey, snonce, epk: String(claims.epk), th2: sha256(sha256(m1), Buffer.from(token)), hello };
}

export { sha256 };
