import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import * as encoding from 'lib0/encoding';
import * as decoding from 'lib0/decoding';
import * as Y from 'yjs';
import * as awarenessProtocol from 'y-protocols/awareness';
import type { Docs } from '../sync/docs.js';
import type { ApiGrant } from '../tokens/api-token.js';
import type { AppConnections } from './app-connections.js';
import type { BodyBudget } from './body-budget.js';
import type { DocName } from '../types.js';
import { RevokedError, StoreError } from '../errors.js';
import { UpdateDecodeError } from '../yjs/parse.js';
import { HttpError } from './http.js';
import { parseDocName, refuseUpgrade } from './server.js';
import { longTimeout } from '../util/timers.js';
import { guardFrameSize } from './frame-guard.js';
import { originAllowed } from './host-check.js';
import { admitAwareness } from './awareness-guard.js';
import { MESSAGE_AWARENESS, MESSAGE_SYNC, Room, SYNC_UPDATE, awarenessMessage } from './yjs-room.js';

const MESSAGE_QUERY_AWARENESS = 3;
const SYNC_STEP1 = 0;
const SYNC_STEP2 = 1;

/** Close codes of the y-websocket route (DESIGN.md §7): y-websocket stops retrying on 4400–4499. */
export const WsClose = {
  badRequest: 4400,
  unauthorized: 4401,
  forbidden: 4403,
  refused: 4409,
  tooLarge: 4413,
  reload: 4410,
  /** Storage not writable, or too many app connections: retry later. */
  unavailable: 4503,
} as const;

/** How long an app has to answer the node's close frame before its socket is cut (ws itself would wait 30 s). */
const CLOSE_GRACE_MS = 1000;

export interface YjsEndpointOptions {
  readonly docs: Docs;
  readonly log: Logger;
  readonly authenticate: (token: string | undefined) => Promise<ApiGrant>;
  readonly allowedOrigins: readonly string[];
  readonly maxUpdateBytes: number;
  readonly now: () => number;
  /** The bound on open app connections (maxAppConnections, and per token); the event streams share it. */
  readonly connections: AppConnections;
  /** The bound on update bytes not yet durable, shared with POST /updates. */
  readonly bodies: BodyBudget;
  /**
   * Bytes waiting unsent to one app (beyond its last sync step 2, which may
   * be the whole document) before the node drops it as too slow; the config's
   * maxQueuedBytes.
   */
  readonly maxQueuedBytes: number;
  /** Every app is pinged this often; one that has not answered the last ping is cut (the config's heartbeatInterval). */
  readonly heartbeatMs: number;
}

/** The y-websocket route: the rest of the raw path is the document's name. */
const ROUTE = '/v1/yjs/';

/**
 * The y-websocket protocol on `/v1/yjs/{name}`: any Yjs app's
 * WebsocketProvider reads and writes through it. Writes go through the same
 * path as `POST /updates` (signed as envelopes of what is new). Refusals other
 * than Origin accept the upgrade and then close with 44xx, since y-websocket
 * retries HTTP refusals forever and stops on 4400–4499; what a retry can fix
 * (storage, too many connections) closes with 4503.
 */
export class YjsEndpoint {
  readonly #o: YjsEndpointOptions;
  readonly #log: Logger;
  readonly #wss: WebSocketServer;
  readonly #rooms = new Map<DocName, Promise<Room>>();
  readonly #maxBuffered: number;
  /** Bytes of the last sync step 2 each app was sent: it may still be reading it. */
  readonly #lastStep2 = new WeakMap<WebSocket, number>();

  constructor(opts: YjsEndpointOptions) {
    this.#o = opts;
    this.#maxBuffered = opts.maxQueuedBytes;
    this.#log = opts.log.child({ component: 'yjs-ws' });
    this.#wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 4 * opts.maxUpdateBytes + 64 * 1024 });
    this.#heartbeat = setInterval(() => this.#sweep(), opts.heartbeatMs).unref();
  }

  readonly #heartbeat: NodeJS.Timeout;
  /** Apps that answered (or connected after) the last ping. */
  readonly #alive = new WeakSet<WebSocket>();

  /** An app that vanished without closing (a laptop gone to sleep, a cut network) is noticed within two heartbeats. */
  #sweep(): void {
    for (const ws of this.#wss.clients) {
      if (!this.#alive.has(ws)) {
        ws.terminate();
        continue;
      }
      this.#alive.delete(ws);
      ws.ping();
    }
  }

  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, url: URL, rawPath: string): void {
    const origin = req.headers.origin;
    if (origin !== undefined && !originAllowed(this.#o.allowedOrigins, origin)) {
      return refuseUpgrade(socket, 403, 'Forbidden');
    }
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('error', () => undefined);
      this.#alive.add(ws);
      ws.on('pong', () => this.#alive.add(ws));
      guardFrameSize(socket, this.#o.maxUpdateBytes + 64, () => closeSocket(ws, WsClose.tooLarge, `message exceeds ${this.#o.maxUpdateBytes} bytes`));
      void this.#accept(ws, req, url, rawPath).catch((err: unknown) => this.#refuse(ws, err, 'y-websocket connection failed'));
    });
  }

  async #accept(ws: WebSocket, req: IncomingMessage, url: URL, rawPath: string): Promise<void> {
    // Messages are queued from the first moment: the app sends its sync step 1
    // while this side is still checking the token and loading the document.
    let ready!: (r: { room: Room; grant: ApiGrant; doc: DocName }) => void;
    let chain: Promise<{ room: Room; grant: ApiGrant; doc: DocName }> = new Promise((resolve) => (ready = resolve));
    // Bytes received and not yet handled: past this, the socket is not read
    // (before the token is checked, or behind writes waiting to be durable).
    let waiting = 0;
    const maxWaiting = this.#o.maxUpdateBytes + 64 * 1024;
    ws.on('message', (data: Buffer) => {
      // Once the node has closed the socket, nothing more the app sends is handled: it need never answer the close frame.
      if (ws.readyState !== ws.OPEN) return;
      waiting += data.length;
      if (waiting > maxWaiting) ws.pause();
      chain = chain.then(async (ctx) => {
        try {
          if (ws.readyState === ws.OPEN) await this.#onMessage(ctx.room, ws, ctx.grant, ctx.doc, new Uint8Array(data));
        } catch (err) {
          this.#refuse(ws, err, 'y-websocket message failed');
        } finally {
          waiting -= data.length;
          if (ws.isPaused && waiting <= maxWaiting) ws.resume();
        }
        return ctx;
      });
    });
    const header = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
    const grant = await this.#o.authenticate(header ?? url.searchParams.get('token') ?? undefined);
    // Every upgrade comes here: a provider given a wrong URL gets a close code it stops on, not an HTTP refusal it retries forever.
    if (!rawPath.startsWith(ROUTE)) throw new HttpError(400, 'bad_route', `no WebSocket route at ${rawPath.slice(0, 60)}; documents are at ${ROUTE}{name}`);
    // The rest of the raw path is the name, slashes included (WebsocketProvider does not encode the room).
    const doc = parseDocName(rawPath.slice(ROUTE.length));
    if (!grant.covers('read', doc)) throw new HttpError(403, 'forbidden', 'token has no read scope for this document');
    // A slot from here, before the document loads, until the socket is gone: beyond the bound, a 4503 the app retries.
    const release = this.#o.connections.take(grant.id);
    ws.once('close', release);
    if (ws.readyState !== ws.OPEN) return release();
    const room = await this.#join(doc, ws);
    const expiry = longTimeout(() => closeSocket(ws, WsClose.unauthorized, 'token expired'), grant.expiresAt - this.#o.now());
    ws.on('close', () => {
      expiry.cancel();
      this.#leave(doc, room, ws);
    });
    if (ws.readyState !== ws.OPEN) {
      expiry.cancel();
      this.#leave(doc, room, ws);
      return;
    }
    const e = encoding.createEncoder();
    encoding.writeVarUint(e, MESSAGE_SYNC);
    encoding.writeVarUint(e, SYNC_STEP1);
    encoding.writeVarUint8Array(e, Y.encodeStateVector(room.live.ydoc));
    this.#send(room.doc, ws, encoding.toUint8Array(e));
    const states = room.awareness.getStates();
    if (states.size) this.#send(room.doc, ws, awarenessMessage(room.awareness, [...states.keys()]));
    ready({ room, grant, doc });
  }

  /** Closes the socket with the code of a refusal (logged when it is the node's own failure). */
  #refuse(ws: WebSocket, err: unknown, what: string): void {
    const [code, reason] = closeFor(err);
    if (code === 1011) this.#log.error({ err }, what);
    closeSocket(ws, code, reason);
  }

  /**
   * Sends to one app, unless more than maxQueuedBytes wait unsent for it
   * (beyond its last sync step 2): then it is dropped at once (a close frame
   * would wait behind what it does not read), so an app that stops reading
   * cannot make the node hold every later change for it. y-websocket
   * reconnects after the drop (1006) and syncs again.
   */
  #send(doc: DocName, ws: WebSocket, msg: Uint8Array): void {
    if (ws.readyState !== ws.OPEN) return;
    if (ws.bufferedAmount > this.#maxBuffered + (this.#lastStep2.get(ws) ?? 0)) {
      this.#log.warn({ doc, queued: ws.bufferedAmount }, 'app too slow to read its WebSocket: dropped');
      ws.terminate();
      return;
    }
    ws.send(msg);
  }

  async #onMessage(room: Room, ws: WebSocket, grant: ApiGrant, doc: DocName, data: Uint8Array): Promise<void> {
    // The expiry timer is a backstop: Node's timers stop while the machine sleeps, the clock does not.
    if (this.#o.now() >= grant.expiresAt) throw new HttpError(401, 'token_expired', 'token expired');
    const d = decoding.createDecoder(data);
    let type: number;
    try {
      type = decoding.readVarUint(d);
    } catch {
      throw new HttpError(400, 'bad_message', 'not a y-websocket message');
    }
    if (type === MESSAGE_SYNC) return this.#onSync(room, ws, grant, doc, d);
    if (type === MESSAGE_AWARENESS) {
      let update: Uint8Array;
      try {
        update = decoding.readVarUint8Array(d);
      } catch {
        throw new HttpError(400, 'bad_message', 'malformed awareness update');
      }
      const admitted = admitAwareness(update, room.awareness, room, ws);
      if (admitted) awarenessProtocol.applyAwarenessUpdate(room.awareness, admitted, ws);
      return;
    }
    if (type === MESSAGE_QUERY_AWARENESS) {
      this.#send(room.doc, ws, awarenessMessage(room.awareness, [...room.awareness.getStates().keys()]));
      return;
    }
    throw new HttpError(400, 'bad_message', `unknown y-websocket message type ${type}`);
  }

  async #onSync(room: Room, ws: WebSocket, grant: ApiGrant, doc: DocName, d: decoding.Decoder): Promise<void> {
    let sub: number;
    let payload: Uint8Array;
    try {
      sub = decoding.readVarUint(d);
      payload = decoding.readVarUint8Array(d);
    } catch {
      throw new HttpError(400, 'bad_message', 'malformed sync message');
    }
    if (sub === SYNC_STEP1) {
      let diff: Uint8Array;
      try {
        diff = Y.encodeStateAsUpdate(room.live.ydoc, payload);
      } catch {
        throw new HttpError(400, 'bad_message', 'malformed state vector');
      }
      const e = encoding.createEncoder();
      encoding.writeVarUint(e, MESSAGE_SYNC);
      encoding.writeVarUint(e, SYNC_STEP2);
      encoding.writeVarUint8Array(e, diff);
      const msg = encoding.toUint8Array(e);
      this.#send(room.doc, ws, msg);
      this.#lastStep2.set(ws, msg.byteLength);
      return;
    }
    if (sub !== SYNC_STEP2 && sub !== SYNC_UPDATE) throw new HttpError(400, 'bad_message', `unknown sync message ${sub}`);
    if (payload.byteLength > this.#o.maxUpdateBytes) throw new HttpError(413, 'too_large', `update exceeds ${this.#o.maxUpdateBytes} bytes`);
    if (!grant.covers('write', doc)) {
      if (await this.#o.docs.hasNew(doc, payload)) throw new HttpError(403, 'read_only', 'this token is read-only: the write was not applied');
      return;
    }
    // Handed on without waiting for it to be durable: keystrokes that arrive
    // meanwhile join the next envelope (Docs keeps them in order). Only a
    // connection with too much in flight waits.
    const state = this.#inflight.get(ws) ?? { bytes: 0, last: Promise.resolve() };
    this.#inflight.set(ws, state);
    if (state.bytes > this.#o.maxUpdateBytes) await state.last;
    // Writes not yet durable hold their bytes in the node's budget for update bodies, as POSTed ones do (beyond it: 4503, retry).
    const share = this.#o.bodies.open(grant.id);
    share.grow(payload.byteLength);
    state.bytes += payload.byteLength;
    const settle = () => {
      state.bytes -= payload.byteLength;
      share.release();
    };
    const written = this.#o.docs.write(doc, payload, ws).then(
      ({ refused }) => {
        settle();
        if (refused.length) closeSocket(ws, WsClose.refused, `refused ${refused.length} part(s) (${refused[0]!.reason}); reload`);
      },
      (err: unknown) => {
        settle();
        this.#refuse(ws, err, 'y-websocket write failed');
      },
    );
    state.last = written;
  }

  /** Writes of each connection not yet durable: bytes, and the latest one. */
  readonly #inflight = new WeakMap<WebSocket, { bytes: number; last: Promise<unknown> }>();

  async #join(doc: DocName, ws: WebSocket): Promise<Room> {
    let pending = this.#rooms.get(doc);
    if (!pending) {
      pending = this.#openRoom(doc);
      this.#rooms.set(doc, pending);
      pending.catch(() => this.#rooms.delete(doc));
    }
    const room = await pending;
    room.join(ws);
    return room;
  }

  async #openRoom(doc: DocName): Promise<Room> {
    const live = await this.#o.docs.acquire(doc);
    return new Room(doc, live, (ws, msg) => this.#send(doc, ws, msg));
  }

  #leave(doc: DocName, room: Room, ws: WebSocket): void {
    if (!room.leave(ws)) return;
    const current = this.#rooms.get(doc);
    if (current) void current.then((r) => r === room && this.#rooms.delete(doc));
    room.close();
    this.#o.docs.release(room.live);
  }

  /** Closes every app connection with the given code (4410: the document was rebuilt, reload). */
  closeDoc(doc: DocName, code: number, reason: string): void {
    const pending = this.#rooms.get(doc);
    // New connections get a fresh room on the rebuilt document.
    this.#rooms.delete(doc);
    void pending?.then((room) => {
      for (const c of room.conns) closeSocket(c, code, reason);
    });
  }

  stop(): void {
    clearInterval(this.#heartbeat);
    for (const c of this.#wss.clients) c.terminate();
    this.#wss.close();
  }
}

/** Closes with a code, and cuts the socket if the app does not answer the close frame in time. */
function closeSocket(ws: WebSocket, code: number, reason: string): void {
  if (ws.readyState === ws.CLOSED) return;
  ws.close(code, reason);
  setTimeout(() => ws.terminate(), CLOSE_GRACE_MS).unref();
}

/** The close code and reason (≤ 123 bytes) for a refusal. */
function closeFor(err: unknown): [number, string] {
  const cut = (s: string) => (Buffer.byteLength(s) > 123 ? Buffer.from(s).subarray(0, 120).toString('utf8') : s);
  if (err instanceof HttpError) {
    const code = { 400: WsClose.badRequest, 401: WsClose.unauthorized, 403: WsClose.forbidden, 409: WsClose.refused, 413: WsClose.tooLarge, 503: WsClose.unavailable }[err.status];
    return [code ?? WsClose.badRequest, cut(err.message)];
  }
  if (err instanceof UpdateDecodeError) return [WsClose.badRequest, cut(err.message)];
  if (err instanceof StoreError) return [WsClose.unavailable, 'storage is not writable; retry later'];
  if (err instanceof RevokedError) return [WsClose.forbidden, cut(err.message)];
  return [1011, 'internal error'];
}
