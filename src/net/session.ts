import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type WebSocket from 'ws';
import type { NodeId } from '../types.js';
import { FrameCipher } from '../protocol/frames.js';
import { Close, PeerRefusal, closeReason, type CloseKind } from '../protocol/close-codes.js';
import { decodeMessage, encodeMessage, type GrantsMessage, type SessionMessage } from '../protocol/messages.js';
import type { Grant } from '../tokens/grant.js';

export type Role = 'dialler' | 'listener';
export type PauseReason = 'rate' | 'backlog';

export interface SessionEvents {
  /** The peer's first `grants` message arrived: nothing else is accepted before it. */
  ready: [grants: GrantsMessage];
  /** A message and the size of its plaintext. */
  message: [message: SessionMessage, bytes: number];
  /** Every queued frame has been written to the socket. */
  drain: [];
  close: [code: number, reason: string];
  /** The peer presented a grant that replaces the one it was admitted by. */
  grant: [grant: Grant];
}

export interface SessionOptions {
  /** Detaches the handshake reader and returns frames that arrived after it, in order. */
  readonly takeover: () => readonly { readonly data: Buffer; readonly isBinary: boolean }[];
  readonly peer: NodeId;
  readonly role: Role;
  /** The node that dialled this session (tie-break of simultaneous dials). */
  readonly dialler: NodeId;
  readonly sendKey: Uint8Array;
  readonly recvKey: Uint8Array;
  readonly expiresAt: number;
  readonly maxFrameBytes: number;
  readonly maxQueuedBytes: number;
  readonly heartbeatMs: number;
  /** Inbound bytes per second this peer may send on average (2 s of burst). */
  readonly maxBytesPerSecond: number;
  /** A peer throttled for more than half of this window is disconnected (4020). */
  readonly rateLimitWindowMs: number;
  readonly remote: string;
  readonly log: Logger;
  /** The node's clock (ms since the epoch): establishment, expiry and the rate limit's refill read it. */
  readonly now: () => number;
}

/**
 * An authenticated, encrypted session with one peer over one WebSocket.
 * Every frame is AES-256-GCM with a per-direction counter; the first frame
 * each way is `grants`. Nothing thrown while handling a frame escapes: a bad
 * frame closes this session with its code and touches nothing else. Its
 * lifetime is checked against the node's clock on every frame in and out,
 * not only by a timer (timers stop while the machine sleeps; clocks do not).
 */
export class Session extends EventEmitter<SessionEvents> {
  readonly peer: NodeId;
  readonly role: Role;
  readonly dialler: NodeId;
  readonly expiresAt: number;
  readonly remote: string;
  readonly establishedAt: number;
  /** The peer's first grants message (its grants and the revocations it knows). */
  peerGrants: GrantsMessage | undefined;
  /** Set when the peer was admitted by a grant rather than a peers-file entry (`admitBy`, then `regrant`). */
  grant: Grant | undefined;
  /** Closes the session when its grant expires (a backstop: every frame checks the clock too). */
  #grantExpiry: NodeJS.Timeout | undefined;
  readonly #ws: WebSocket;
  readonly #seal: FrameCipher;
  readonly #open: FrameCipher;
  readonly #opts: SessionOptions;
  readonly #log: Logger;
  #ready = false;
  #closed = false;
  #queued = 0;
  #alive = true;
  #heartbeat: NodeJS.Timeout | undefined;
  #bucket: number;
  #refilled: number;
  #paused: NodeJS.Timeout | undefined;
  /** [when, ms] of recent throttling pauses, for the "persists" test. */
  readonly #throttles: [number, number][] = [];
  #expiry: NodeJS.Timeout | undefined;

  constructor(ws: WebSocket, opts: SessionOptions) {
    super();
    this.#ws = ws;
    this.#opts = opts;
    this.peer = opts.peer;
    this.role = opts.role;
    this.dialler = opts.dialler;
    this.expiresAt = opts.expiresAt;
    this.remote = opts.remote;
    this.establishedAt = opts.now();
    this.#refilled = this.establishedAt;
    this.#bucket = 2 * opts.maxBytesPerSecond;
    this.#seal = new FrameCipher(opts.sendKey);
    this.#open = new FrameCipher(opts.recvKey);
    this.#log = opts.log.child({ component: 'session', peer: opts.peer, role: opts.role });
    ws.on('close', (code, reason) => this.#onClosed(code, reason.toString()));
    ws.on('error', (err) => this.#log.debug({ err }, 'socket error'));
    ws.on('pong', () => (this.#alive = true));
    this.#heartbeat = setInterval(() => this.#beat(), opts.heartbeatMs);
    this.#expiry = setTimeout(() => this.close(Close.sessionExpired, 'session lifetime reached'), Math.max(0, opts.expiresAt - this.establishedAt));
  }

  /**
   * Starts reading frames, first those that arrived during the handshake.
   * Called once the owner listens for `ready`, `message` and `close`.
   */
  start(): void {
    for (const frame of this.#opts.takeover()) this.#onFrame(frame.data, frame.isBinary);
    this.#ws.on('message', (data, isBinary) => this.#onFrame(data as Buffer, isBinary));
  }

  /**
   * Stops reading from the socket for a reason (the rate limit, or a backlog
   * of received messages); reading starts again only once no reason is left.
   */
  pause(reason: PauseReason): void {
    this.#pausedFor.add(reason);
    if (!this.#closed) this.#ws.pause();
  }

  resume(reason: PauseReason): void {
    this.#pausedFor.delete(reason);
    if (!this.#closed && this.#pausedFor.size === 0) this.#ws.resume();
  }

  readonly #pausedFor = new Set<PauseReason>();

  get ready(): boolean {
    return this.#ready;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Bytes handed to the socket that it has not written yet. */
  get queuedBytes(): number {
    return this.#queued;
  }

  /** Encrypts and sends one message. A peer that lets the queue pass maxQueuedBytes is dropped. */
  send(message: SessionMessage): void {
    if (this.#closed || this.#expired()) return;
    const frame = this.#seal.seal(encodeMessage(message));
    if (this.#queued + frame.byteLength > this.#opts.maxQueuedBytes) {
      this.close(Close.slowPeer, `more than ${this.#opts.maxQueuedBytes} bytes queued`);
      return;
    }
    this.#queued += frame.byteLength;
    this.#ws.send(frame, { binary: true }, () => {
      this.#queued -= frame.byteLength;
      if (this.#queued === 0) this.emit('drain');
    });
    this.#prepareCiphers();
  }

  #preparing = false;

  /**
   * Makes the ciphers of the next frame each way once this turn's work is
   * done (in the event loop's check phase, when a receive is waiting for its
   * fsync): the next frame then does not wait for its cipher to be created.
   */
  #prepareCiphers(): void {
    if (this.#preparing) return;
    this.#preparing = true;
    setImmediate(() => {
      this.#preparing = false;
      if (this.#closed) return;
      this.#seal.prepare('seal');
      this.#open.prepare('open');
    });
  }

  /**
   * Closes the session once the node's clock has passed its expiry (4012), or
   * the expiry of the grant that admitted the peer (4019): nothing more goes
   * either way. The timers are only a backstop.
   */
  #expired(): boolean {
    const now = this.#opts.now();
    if (now >= this.expiresAt) {
      this.close(Close.sessionExpired, 'session lifetime reached');
      return true;
    }
    if (this.grant && now >= this.grant.exp * 1000) {
      this.close(Close.grantRequired, 'grant expired');
      return true;
    }
    return false;
  }

  #onFrame(data: Buffer, isBinary: boolean): void {
    if (this.#closed || this.#expired()) return;
    try {
      if (!isBinary) throw new PeerRefusal(Close.protocolError, 'text frame after the handshake');
      if (data.byteLength > this.#opts.maxFrameBytes) throw new PeerRefusal(Close.frameTooLarge, `frame over ${this.#opts.maxFrameBytes} bytes`);
      this.#meter(data.byteLength);
      const plain = this.#open.open(data);
      const message = decodeMessage(plain);
      if (!this.#ready) {
        if (message.type !== 'grants') throw new PeerRefusal(Close.protocolError, 'the first message must be grants');
        this.#ready = true;
        this.peerGrants = message;
        this.emit('ready', message);
        return;
      }
      this.emit('message', message, plain.byteLength);
      this.#prepareCiphers();
    } catch (err) {
      if (err instanceof PeerRefusal) {
        this.#log.warn({ code: err.kind.code, reason: err.message, remote: this.remote }, 'closing session');
        this.close(err.kind, err.message);
      } else {
        this.#log.error({ err }, 'session message handler failed');
        this.close(Close.protocolError, 'internal error handling a message');
      }
    }
  }

  /**
   * Token bucket on inbound bytes: a peer over its rate is throttled (reading
   * pauses, at most a second at a time so heartbeats still get through); one
   * that stays over it for more than half of `rateLimitWindow` is disconnected.
   */
  #meter(bytes: number): void {
    const rate = this.#opts.maxBytesPerSecond;
    const now = this.#opts.now();
    // A clock set back refills nothing (it must not drain the bucket either).
    this.#bucket = Math.min(2 * rate, this.#bucket + (Math.max(0, now - this.#refilled) / 1000) * rate);
    this.#refilled = now;
    this.#bucket -= bytes;
    if (this.#bucket >= 0 || this.#paused) return;
    const ms = Math.min(1000, Math.ceil((-this.#bucket / rate) * 1000));
    const window = this.#opts.rateLimitWindowMs;
    this.#throttles.push([now, ms]);
    while (this.#throttles.length && this.#throttles[0]![0] < now - window) this.#throttles.shift();
    const throttled = this.#throttles.reduce((n, [, d]) => n + d, 0);
    if (throttled > window / 2) throw new PeerRefusal(Close.rateLimited, `over ${rate} bytes/s for most of ${Math.round(window / 1000)} s`);
    this.pause('rate');
    this.#paused = setTimeout(() => {
      this.#paused = undefined;
      this.resume('rate');
    }, ms);
  }

  /** Times this session has been throttled within the rate-limit window (metrics, tests). */
  get throttles(): number {
    return this.#throttles.length;
  }

  #beat(): void {
    // After a sleep the heartbeat comes round well before the expiry timer does.
    if (this.#expired()) return;
    if (!this.#alive) {
      this.#log.warn({ remote: this.remote }, 'peer missed a heartbeat; dropping the session');
      this.#ws.terminate();
      this.#onClosed(Close.heartbeat.code, closeReason(Close.heartbeat, 'no pong'));
      return;
    }
    this.#alive = false;
    this.#ws.ping();
  }

  /** The peer was admitted by this grant: the session ends when it expires, unless the peer refreshes it first. */
  admitBy(grant: Grant): void {
    this.grant = grant;
    clearTimeout(this.#grantExpiry);
    if (this.#closed) return;
    this.#grantExpiry = setTimeout(() => this.close(Close.grantRequired, 'grant expired'), Math.min(Math.max(0, grant.exp * 1000 - this.#opts.now()), 2 ** 31 - 1));
  }

  /** The peer refreshed its grant in this session: its permissions and expiry are the new grant's from now on. */
  regrant(grant: Grant): void {
    this.admitBy(grant);
    this.emit('grant', grant);
  }

  close(kind: CloseKind, detail: string): void {
    if (this.#closed) return;
    const reason = closeReason(kind, detail);
    try {
      this.#ws.close(kind.code, reason);
    } catch {
      this.#ws.terminate();
    }
    this.#onClosed(kind.code, reason);
  }

  #onClosed(code: number, reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#heartbeat);
    clearTimeout(this.#expiry);
    clearTimeout(this.#grantExpiry);
    clearTimeout(this.#paused);
    // A peer that never completes the close handshake must not hold the socket.
    setTimeout(() => this.#ws.terminate(), 2000).unref();
    this.emit('close', code, reason);
  }
}
