import { generateKeyPairSync, randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import WebSocket from 'ws';
import type { KeyPair } from '../identity/keys.js';
import { importPublicJwk } from '../identity/keys.js';
import type { NodeId, PublicJwk } from '../types.js';
import { Close, PeerRefusal, RemoteClosed } from '../protocol/close-codes.js';
import {
  b64u,
  deriveSessionKeys,
  diallerHeaderKey,
  encodeHello,
  parseHello,
  signDiallerToken,
  signListenerToken,
  transcript,
  verifyDiallerToken,
  verifyListenerToken,
  x25519Public,
  type Hello,
} from '../protocol/handshake.js';
import type { GrantsMessage } from '../protocol/messages.js';
import { Session } from './session.js';
import { ReplayCache } from './replay-cache.js';

export interface HandshakeSettings {
  readonly identity: KeyPair;
  readonly sessionTtlMs: number;
  readonly clockToleranceMs: number;
  readonly handshakeTimeoutMs: number;
  readonly maxPreAuthBytes: number;
  readonly maxFrameBytes: number;
  readonly maxQueuedBytes: number;
  readonly heartbeatMs: number;
  readonly maxPeerBytesPerSecond: number;
  readonly rateLimitWindowMs: number;
  readonly now: () => number;
  readonly replay: ReplayCache;
  readonly log: Logger;
}

/** How the listener decides about a hello: the peer's pinned key, or admission by grant. */
export type Admission =
  | { readonly kind: 'pinned'; readonly key: PublicJwk }
  | { readonly kind: 'grant' }
  | { readonly kind: 'refuse'; readonly refusal: PeerRefusal };

/** Frames a peer may send after its last handshake message, before the session takes over (its first grants). */
const MAX_EARLY_FRAMES = 4;
const MAX_EARLY_BYTES = 1024 * 1024;

/** The last moment a token with this `exp` still verifies (the clock tolerance counts): its id is remembered until then. */
const verifiableUntil = (exp: number, s: HandshakeSettings) => (exp + Math.ceil(s.clockToleranceMs / 1000)) * 1000;

/** A frame that arrived after the handshake and before the session took over. */
export interface EarlyFrame {
  readonly data: Buffer;
  readonly isBinary: boolean;
}

/**
 * Counts the raw TCP bytes the peer sends on `ws` from now on and drops the
 * connection once they pass `max`. For a connection refused before
 * authentication: the WebSocket layer goes on reading (and buffering, up to
 * maxFrameBytes) until the peer answers the close or the socket is
 * terminated, so without this a refused peer could still make the node hold
 * a whole frame's worth of memory.
 */
export function readAtMost(ws: WebSocket, max: number): void {
  const socket = (ws as unknown as { _socket?: NodeJS.EventEmitter | null })._socket;
  if (!socket) return;
  let bytes = 0;
  socket.on('data', (chunk: Buffer) => {
    bytes += chunk.byteLength;
    if (bytes > max) ws.terminate();
  });
}

/**
 * Reads the handshake's text frames one at a time, with a deadline and a cap
 * on the bytes received before authentication. Binary frames are refused.
 */
class PreAuth {
  readonly #ws: WebSocket;
  readonly #queue: Uint8Array[] = [];
  #waiter: { resolve: (b: Uint8Array) => void; reject: (e: Error) => void } | undefined;
  #failure: PeerRefusal | RemoteClosed | undefined;
  #bytes = 0;
  readonly #timer: NodeJS.Timeout;
  readonly #onMessage: (data: WebSocket.RawData, isBinary: boolean) => void;
  readonly #onClose: (code: number, reason: Buffer) => void;

  readonly #expected: number;
  #received = 0;
  #earlyBytes = 0;
  readonly #early: EarlyFrame[] = [];

  /** `expected`: how many handshake frames the peer sends; frames after them are kept for the session. */
  constructor(ws: WebSocket, s: HandshakeSettings, expected: number) {
    this.#ws = ws;
    this.#expected = expected;
    this.#timer = setTimeout(() => this.#fail(new PeerRefusal(Close.handshakeTimeout, `no complete handshake within ${s.handshakeTimeoutMs}ms`)), s.handshakeTimeoutMs);
    this.#onMessage = (data, isBinary) => {
      const buf = data as Buffer;
      if (this.#received >= this.#expected) {
        // The peer's first session frame (grants), sent right after its last
        // handshake message; bounded by maxFrameBytes and a frame count.
        this.#earlyBytes += buf.byteLength;
        if (this.#early.length >= MAX_EARLY_FRAMES || this.#earlyBytes > MAX_EARLY_BYTES) {
          return this.#fail(new PeerRefusal(Close.preAuthLimit, `more than ${MAX_EARLY_BYTES} bytes sent before the session started`));
        }
        this.#early.push({ data: buf, isBinary });
        return;
      }
      this.#bytes += buf.byteLength;
      if (this.#bytes > s.maxPreAuthBytes) return this.#fail(new PeerRefusal(Close.preAuthLimit, `more than ${s.maxPreAuthBytes} bytes before authentication`));
      this.#received++;
      if (isBinary) return this.#fail(new PeerRefusal(Close.handshakeInvalid, 'binary frame during the handshake'));
      if (this.#waiter) {
        const w = this.#waiter;
        this.#waiter = undefined;
        w.resolve(buf);
      } else {
        this.#queue.push(buf);
      }
    };
    this.#onClose = (code, reason) => this.#fail(new RemoteClosed(code, reason.toString()), false);
    ws.on('message', this.#onMessage);
    ws.on('close', this.#onClose);
    // Bytes before authentication are counted on the raw socket too, so a
    // frame that never completes cannot buffer past the cap. The count goes
    // on after a refusal (the WebSocket layer reads on until the close
    // completes, so a refused peer gets no more room than an accepted one
    // had), and stops only when the session takes over.
    const socket = (ws as unknown as { _socket?: NodeJS.EventEmitter })._socket;
    socket?.on('data', (chunk: Buffer) => {
      if (this.#handedOver) return;
      // Before the last handshake message: the pre-auth cap; after it, the early-frame cap.
      const early = this.#received >= this.#expected;
      if (early) this.#rawEarly += chunk.byteLength;
      else this.#raw += chunk.byteLength;
      if (this.#raw <= s.maxPreAuthBytes + 4096 && this.#rawEarly <= MAX_EARLY_BYTES + 4096) return;
      if (this.#done) this.#ws.terminate();
      else this.#fail(new PeerRefusal(Close.preAuthLimit, `more than ${s.maxPreAuthBytes} bytes before authentication`));
    });
  }

  #raw = 0;
  #rawEarly = 0;
  /** The handshake is over, either way. */
  #done = false;
  /** The session took over the socket (and its limits). */
  #handedOver = false;

  next(): Promise<Uint8Array> {
    if (this.#failure) return Promise.reject(this.#failure);
    const q = this.#queue.shift();
    if (q) return Promise.resolve(q);
    return new Promise((resolve, reject) => (this.#waiter = { resolve, reject }));
  }

  #fail(refusal: PeerRefusal | RemoteClosed, close = true): void {
    if (this.#failure || this.#done) return;
    this.#failure = refusal;
    if (close && refusal instanceof PeerRefusal && this.#ws.readyState === WebSocket.OPEN) this.#ws.close(refusal.kind.code, refusal.reason);
    this.#waiter?.reject(refusal);
    this.#waiter = undefined;
    this.abandon();
  }

  /** Stops the deadline; frames keep being buffered until the session takes over. */
  authenticated(): void {
    clearTimeout(this.#timer);
  }

  /** The handshake failed: stops reading frames, but keeps the byte caps until the socket is gone. */
  abandon(): void {
    this.#done = true;
    clearTimeout(this.#timer);
    this.#ws.off('message', this.#onMessage);
    this.#ws.off('close', this.#onClose);
    this.#early.splice(0);
  }

  /** Stops listening and hands the session the frames that arrived after the handshake. */
  finish(): EarlyFrame[] {
    const early = this.#early.splice(0);
    this.abandon();
    this.#handedOver = true;
    return early;
  }
}

function ephemeral() {
  const { publicKey, privateKey } = generateKeyPairSync('x25519');
  return { privateKey, epk: x25519Public(publicKey) };
}

const nonce = () => b64u(randomBytes(32));
const jti = () => b64u(randomBytes(16));

function sessionOptions(s: HandshakeSettings, ws: WebSocket, pre: PreAuth, o: { peer: NodeId; role: 'dialler' | 'listener'; dialler: NodeId; sendKey: Uint8Array; recvKey: Uint8Array; ttlS: number; remote: string }) {
  pre.authenticated();
  return new Session(ws, {
    takeover: () => pre.finish(),
    peer: o.peer,
    role: o.role,
    dialler: o.dialler,
    sendKey: o.sendKey,
    recvKey: o.recvKey,
    expiresAt: s.now() + o.ttlS * 1000,
    maxFrameBytes: s.maxFrameBytes,
    maxQueuedBytes: s.maxQueuedBytes,
    heartbeatMs: s.heartbeatMs,
    maxBytesPerSecond: s.maxPeerBytesPerSecond,
    rateLimitWindowMs: s.rateLimitWindowMs,
    remote: o.remote,
    log: s.log,
    now: s.now,
  });
}

/** The listener's side of the handshake on an upgraded socket. Resolves with a session (grants not yet exchanged). */
export async function acceptHandshake(
  ws: WebSocket,
  s: HandshakeSettings,
  remote: string,
  admit: (hello: Hello) => Admission,
  ownGrants: () => GrantsMessage,
  onClaimed: (id: string) => void,
): Promise<{ session: Session; admission: Admission; peerKey: PublicJwk }> {
  const pre = new PreAuth(ws, s, 2);
  try {
    const m1 = await pre.next();
    const hello = parseHello(m1);
    onClaimed(hello.from);
    if (hello.to !== s.identity.id) throw new PeerRefusal(Close.wrongNode, 'hello is addressed to another node');
    const admission = admit(hello);
    if (admission.kind === 'refuse') throw admission.refusal;
    const th1 = transcript(undefined, m1);
    const eph = ephemeral();
    const ttlS = Math.ceil(s.sessionTtlMs / 1000);
    const ownNonce = nonce();
    const m2 = await signListenerToken({
      signer: s.identity,
      audience: hello.from,
      iat: Math.floor(s.now() / 1000),
      jti: jti(),
      sessionTtlS: ttlS,
      dialerNonce: hello.nonce,
      epk: eph.epk,
      nonce: ownNonce,
      th1,
    });
    const m2bytes = Buffer.from(m2);
    ws.send(m2);
    const th2 = transcript(th1, m2bytes);
    const m3bytes = await pre.next();
    const m3 = Buffer.from(m3bytes).toString('utf8');
    const headerKey = diallerHeaderKey(m3, hello.from);
    if (admission.kind === 'pinned' && headerKey.x !== admission.key.x) throw new PeerRefusal(Close.keyMismatch, 'key differs from the pinned one');
    const v = await verifyDiallerToken(m3, headerKey, { self: s.identity.id, now: s.now(), clockToleranceS: Math.ceil(s.clockToleranceMs / 1000), dialler: hello.from, listenerNonce: ownNonce, th2 });
    if (!s.replay.remember(v.payload.jti!, verifiableUntil(v.payload.exp!, s))) throw new PeerRefusal(Close.replay, 'token id already used');
    const th3 = transcript(th2, m3bytes);
    const keys = deriveSessionKeys(eph.privateKey, hello.epk, th3);
    const session = sessionOptions(s, ws, pre, { peer: hello.from, role: 'listener', dialler: hello.from, sendKey: keys.l2d, recvKey: keys.d2l, ttlS: Math.min(ttlS, v.payload.sttl), remote });
    // A peer admitted by grant hears nothing until its grant is verified (the caller sends then).
    if (admission.kind === 'pinned') session.send(ownGrants());
    return { session, admission, peerKey: headerKey };
  } catch (err) {
    pre.abandon();
    throw closeWith(ws, err);
  }
}

/** The dialler's side: connect, prove who we are, check who they are. */
export async function dialHandshake(url: string, peer: { id: NodeId; key: PublicJwk }, s: HandshakeSettings, ownGrants: () => GrantsMessage): Promise<Session> {
  const ws = new WebSocket(url, 'tessera.v1', { perMessageDeflate: false, maxPayload: s.maxFrameBytes, handshakeTimeout: s.handshakeTimeoutMs, followRedirects: false });
  ws.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', (err) => reject(err));
    ws.once('close', (code, reason) => reject(new RemoteClosed(code, reason.toString())));
  });
  if (ws.protocol !== 'tessera.v1') {
    ws.terminate();
    throw new PeerRefusal(Close.handshakeInvalid, 'listener did not accept the tessera.v1 subprotocol');
  }
  const pre = new PreAuth(ws, s, 1);
  try {
    const eph = ephemeral();
    const ownNonce = nonce();
    const m1 = encodeHello({ from: s.identity.id, to: peer.id, epk: eph.epk, nonce: ownNonce });
    ws.send(Buffer.from(m1).toString('utf8'));
    const th1 = transcript(undefined, m1);
    const m2bytes = await pre.next();
    const m2 = Buffer.from(m2bytes).toString('utf8');
    const ctx = { self: s.identity.id, now: s.now(), clockToleranceS: Math.ceil(s.clockToleranceMs / 1000) };
    const v = await verifyListenerToken(m2, importPublicJwk(peer.key), { ...ctx, listener: peer.id, dialerNonce: ownNonce, th1 });
    if (!s.replay.remember(v.payload.jti!, verifiableUntil(v.payload.exp!, s))) throw new PeerRefusal(Close.replay, 'token id already used');
    const th2 = transcript(th1, m2bytes);
    const ttlS = Math.ceil(s.sessionTtlMs / 1000);
    const m3 = await signDiallerToken({
      signer: s.identity,
      publicJwk: s.identity.publicJwk,
      audience: peer.id,
      iat: Math.floor(s.now() / 1000),
      jti: jti(),
      sessionTtlS: ttlS,
      listenerNonce: v.payload.snonce!,
      th2,
    });
    const m3bytes = Buffer.from(m3);
    const th3 = transcript(th2, m3bytes);
    const keys = deriveSessionKeys(eph.privateKey, v.payload.epk!, th3);
    ws.send(m3);
    const session = sessionOptions(s, ws, pre, { peer: peer.id, role: 'dialler', dialler: s.identity.id, sendKey: keys.d2l, recvKey: keys.l2d, ttlS: Math.min(ttlS, v.payload.sttl), remote: url });
    session.send(ownGrants());
    return session;
  } catch (err) {
    pre.abandon();
    throw closeWith(ws, err);
  }
}

/** Closes the socket with the refusal's code (once) and returns the error to rethrow. */
function closeWith(ws: WebSocket, err: unknown): PeerRefusal | RemoteClosed {
  if (err instanceof RemoteClosed) return err;
  const refusal = err instanceof PeerRefusal ? err : new PeerRefusal(Close.handshakeInvalid, 'handshake failed');
  if (ws.readyState === WebSocket.OPEN) ws.close(refusal.kind.code, refusal.reason);
  else if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
  setTimeout(() => ws.terminate(), 2000).unref();
  return refusal;
}
