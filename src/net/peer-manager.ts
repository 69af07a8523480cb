import { EventEmitter } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import type { NodeConfig } from '../config/node-config.js';
import type { PeerEntry, PeersConfig, PeersDiff } from '../config/peers.js';
import type { KeyPair } from '../identity/keys.js';
import type { NodeId } from '../types.js';
import type { HostPort } from '../util/address.js';
import type { PeerState, PeerStatus } from '../api/routes/status.js';
import { Close, PeerRefusal, RemoteClosed, closeReason, type CloseKind } from '../protocol/close-codes.js';
import { SUBPROTOCOL, type Hello } from '../protocol/handshake.js';
import { grantsMessages, type GrantsMessage } from '../protocol/messages.js';
import { acceptHandshake, dialHandshake, readAtMost, type Admission, type HandshakeSettings } from './handshake.js';
import { Dialer } from './dialer.js';
import { RateLimiter } from './rate-limit.js';
import { ReplayCache } from './replay-cache.js';
import { UnauthenticatedSlots } from './unauthenticated-slots.js';
import { addressGroup } from '../util/address.js';
import type { Session } from './session.js';
import type { Trust } from '../trust/trust.js';
import type { PublicJwk } from '../types.js';

/** TCP connections not yet upgraded may be this many times the handshake caps (maxUnauthenticated, and per address). */
const CONNECTING_SHARE = 4;

export interface PeerManagerOptions {
  readonly identity: KeyPair;
  readonly config: NodeConfig;
  readonly peers: PeersConfig;
  /** What this node presents in every session: its grants (those naming it first) and the revocations it knows (those that bind it first). */
  readonly grants: () => Credentials;
  readonly trust: Trust;
  readonly log: Logger;
  readonly now: () => number;
}

/** Grants and revocations, as a node holds them. */
export interface Credentials {
  readonly grants: readonly string[];
  readonly revocations: readonly string[];
}

/** This node's grants messages for one session: the first frame, then (once the session is kept) what did not fit in it. */
interface Opening {
  first(): GrantsMessage;
  rest(): GrantsMessage[];
}

/**
 * Splits what this node presents into grants messages within the protocol's
 * limits (PROTOCOL.md §5): the first one is the session's first frame; the
 * rest, taken from what the node holds by the time the session is kept,
 * follow before anything else.
 */
function opening(all: () => Credentials): Opening {
  let sent = new Set<string>();
  return {
    first() {
      const { grants, revocations } = all();
      const first = grantsMessages(grants, revocations)[0]!;
      sent = new Set([...first.grants, ...first.revocations]);
      return first;
    },
    rest() {
      const { grants, revocations } = all();
      const left = (list: readonly string[]) => list.filter((t) => !sent.has(t));
      return grantsMessages(left(grants), left(revocations)).filter((m) => m.grants.length || m.revocations.length);
    },
  };
}

export interface PeerManagerEvents {
  /** A session is authenticated, grants are exchanged, and it is the one kept for its peer. */
  session: [session: Session];
  /** The kept session of a peer closed. */
  sessionClosed: [session: Session, code: number, reason: string];
}

interface PeerRuntime {
  state: PeerState;
  since: number | null;
  dialer?: Dialer;
}

/**
 * Owns the peer listener, the dialled connections and the sessions: at most
 * one kept session per peer, chosen deterministically when two nodes dial
 * each other at once; re-authentication before expiry; live config changes.
 */
export class PeerManager extends EventEmitter<PeerManagerEvents> {
  readonly #opts: PeerManagerOptions;
  readonly #log: Logger;
  readonly #settings: HandshakeSettings;
  readonly #rate: RateLimiter;
  #peers: PeersConfig;
  #byId = new Map<NodeId, PeerEntry>();
  readonly #runtime = new Map<NodeId, PeerRuntime>();
  readonly #sessions = new Map<NodeId, Session>();
  readonly #pending = new Set<WebSocket | Session>();
  readonly #unauthenticated: UnauthenticatedSlots<WebSocket>;
  /** TCP connections that have not asked for their upgrade yet (each holds a file descriptor). */
  readonly #connecting: UnauthenticatedSlots<Socket>;
  /** Handshakes by result: "ok" or the refusal's name. */
  readonly handshakes = new Map<string, number>();
  #server: Server | undefined;
  #wss: WebSocketServer | undefined;
  #bound: HostPort | undefined;
  #stopped = false;

  constructor(opts: PeerManagerOptions) {
    super();
    this.#opts = opts;
    this.#log = opts.log.child({ component: 'peers' });
    const c = opts.config;
    this.#settings = {
      identity: opts.identity,
      sessionTtlMs: c.sessionTtl,
      clockToleranceMs: c.clockTolerance,
      handshakeTimeoutMs: c.handshakeTimeout,
      maxPreAuthBytes: c.maxPreAuthBytes,
      maxFrameBytes: c.maxFrameBytes,
      maxQueuedBytes: c.maxQueuedBytes,
      heartbeatMs: c.heartbeatInterval,
      maxPeerBytesPerSecond: c.maxPeerBytesPerSecond,
      rateLimitWindowMs: c.rateLimitWindow,
      now: opts.now,
      replay: new ReplayCache({ now: opts.now }),
      log: opts.log,
    };
    this.#rate = new RateLimiter({ perMinute: c.handshakesPerMinute, now: opts.now });
    this.#unauthenticated = new UnauthenticatedSlots({ max: c.maxUnauthenticated, perAddress: c.maxUnauthenticatedPerAddress });
    this.#connecting = new UnauthenticatedSlots({ max: CONNECTING_SHARE * c.maxUnauthenticated, perAddress: CONNECTING_SHARE * c.maxUnauthenticatedPerAddress });
    this.#peers = opts.peers;
    this.#index();
  }

  get address(): HostPort {
    if (!this.#bound) throw new Error('peer listener not started');
    return this.#bound;
  }

  get peers(): PeersConfig {
    return this.#peers;
  }

  async start(): Promise<void> {
    const wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      maxPayload: this.#opts.config.maxFrameBytes,
      handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
    });
    const server = createServer(
      { connectionsCheckingInterval: Math.max(100, Math.min(1000, this.#opts.config.handshakeTimeout / 2)) },
      (_req, res) => res.writeHead(426, { connection: 'close' }).end('Tessera peers speak WebSocket (tessera.v1)\n'),
    );
    server.headersTimeout = this.#opts.config.handshakeTimeout;
    server.requestTimeout = this.#opts.config.handshakeTimeout;
    server.on('connection', (socket: Socket) => this.#onConnection(socket));
    server.on('upgrade', (req, socket, head) => this.#upgrade(wss, req, socket, head));
    server.on('clientError', (_err, socket) => socket.destroy());
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.#opts.config.listen.port, this.#opts.config.listen.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.#bound = { host: this.#opts.config.listen.host, port: (server.address() as AddressInfo).port };
    this.#server = server;
    this.#wss = wss;
    for (const p of this.#peers.peers) this.#startDialer(p);
  }

  /** Dials a peer now instead of waiting out its backoff (an admin's nudge, or a test's). */
  redialNow(peer: NodeId): void {
    const entry = this.#byId.get(peer);
    if (entry) this.#startDialer(entry);
  }

  /** The kept session with a peer, if one is up. */
  session(peer: NodeId): Session | undefined {
    return this.#sessions.get(peer);
  }

  sessions(): IterableIterator<Session> {
    return this.#sessions.values();
  }

  /** The grant a peer admitted by grant alone holds in its current session. */
  sessionGrant(peer: NodeId) {
    const s = this.#sessions.get(peer);
    return s && !this.#byId.has(peer) ? s.grant : undefined;
  }

  status(): PeerStatus[] {
    const listed = this.#peers.peers.map((p) => {
      const rt = this.#runtime.get(p.id);
      const state: PeerState = p.revoked || this.#opts.trust.isRevoked(p.id) ? 'revoked' : (rt?.state ?? 'disconnected');
      return { name: p.name ?? null, id: p.id, url: p.url ?? null, state, since: rt?.since ? new Date(rt.since).toISOString() : null };
    });
    const granted = [...this.#sessions.values()]
      .filter((s) => !this.#byId.has(s.peer))
      .map((s) => ({ name: null, id: s.peer, url: null, state: 'connected' as PeerState, since: new Date(this.#runtime.get(s.peer)?.since ?? s.establishedAt).toISOString() }));
    return [...listed, ...granted];
  }

  /** Applies a reloaded peers file: dial the new, cut off the removed, re-keyed and revoked at once. */
  applyPeers(next: PeersConfig, diff: PeersDiff): void {
    this.#peers = next;
    this.#index();
    for (const p of diff.removed) this.#drop(p.id, Close.peerRemoved, 'removed from the peers file');
    for (const { before, after } of diff.rekeyed) {
      this.#drop(before.id, Close.peerRemoved, 're-keyed in the peers file');
      this.#startDialer(after);
    }
    for (const p of diff.added) this.#startDialer(p);
    for (const { before, after } of diff.changed) {
      if (after.revoked) {
        this.#drop(after.id, Close.peerRevoked, 'revoked');
        continue;
      }
      if (before.url !== after.url || before.revoked) {
        this.#runtime.get(after.id)?.dialer?.stop();
        this.#startDialer(after);
      }
    }
  }

  #index(): void {
    this.#byId = new Map(this.#peers.peers.map((p) => [p.id, p]));
  }

  #setState(peer: NodeId, state: PeerState): void {
    const rt = this.#runtime.get(peer) ?? { state, since: null };
    if (rt.state !== state || rt.since === null) rt.since = this.#opts.now();
    rt.state = state;
    this.#runtime.set(peer, rt);
  }

  #startDialer(p: PeerEntry): void {
    if (this.#stopped || !p.url || p.revoked || !this.#server) return;
    const rt = this.#runtime.get(p.id) ?? { state: 'disconnected' as PeerState, since: null };
    this.#runtime.set(p.id, rt);
    rt.dialer?.stop();
    const url = p.url;
    const dialer = new Dialer({
      dial: () => this.#dial(p.id, url),
      connected: () => this.#sessions.has(p.id),
      onState: (state) => this.#setState(p.id, state),
      reconnectMaxMs: this.#opts.config.reconnectMax,
      refusedReconnectMaxMs: this.#opts.config.refusedReconnectMax,
      log: this.#log.child({ peer: p.id }),
    });
    rt.dialer = dialer;
    dialer.start();
  }

  async #dial(peer: NodeId, url: string): Promise<void> {
    const entry = this.#byId.get(peer);
    if (!entry || entry.revoked) throw new PeerRefusal(Close.peerRemoved, 'no longer in the peers file');
    let session: Session;
    const own = opening(this.#opts.grants);
    try {
      session = await dialHandshake(url, { id: peer, key: entry.publicKey }, this.#settings, own.first);
      this.#count('ok');
    } catch (err) {
      this.#count(err instanceof PeerRefusal ? err.kind.name : err instanceof RemoteClosed ? 'refused_by_peer' : 'unreachable');
      throw err;
    }
    await this.#whenReady(session, own);
  }

  /**
   * Waits for the peer's grants message; a peer admitted by grant must
   * present a valid one for the key that signed its handshake (4019
   * otherwise). Then keeps or drops the session.
   */
  #whenReady(session: Session, own: Opening, grantKey?: PublicJwk): Promise<void> {
    this.#pending.add(session);
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => session.close(Close.protocolError, 'no grants message in time'), this.#opts.config.handshakeTimeout);
      session.once('ready', (grants) => {
        clearTimeout(timer);
        void (async () => {
          if (grantKey) {
            const grant = await this.#opts.trust.admission(session.peer, grantKey.x, grants.grants);
            if (!grant) return session.close(Close.grantRequired, 'no valid grant from a trusted authority for this key');
            session.admitBy(grant);
            session.send(own.first());
          }
          this.#pending.delete(session);
          // It may have closed while its grant was being checked: a closed session is never installed.
          if (session.closed) return;
          this.#install(session, own);
        })().then(resolve, reject);
      });
      session.once('close', (code, reason) => {
        clearTimeout(timer);
        this.#pending.delete(session);
        reject(new RemoteClosed(code, reason));
      });
      session.start();
    });
  }

  #install(session: Session, own: Opening): void {
    const peer = session.peer;
    const entry = this.#byId.get(peer);
    if (this.#stopped) return session.close(Close.goingAway, 'node stopping');
    if (!entry && !session.grant) return session.close(Close.peerRemoved, 'not in the peers file');
    if (entry?.revoked || this.#opts.trust.isRevoked(peer)) return session.close(Close.peerRevoked, 'revoked');
    if (!entry && session.grant) this.#watchGrant(session);
    const existing = this.#sessions.get(peer);
    if (existing && !existing.closed) {
      if (existing.dialler === session.dialler) {
        this.#replace(existing, session, Close.replaced, 're-authenticated');
      } else {
        const winner = this.#opts.identity.id < peer ? this.#opts.identity.id : peer;
        if (session.dialler !== winner) return session.close(Close.duplicateSession, 'simultaneous dial; the other session is kept');
        this.#replace(existing, session, Close.duplicateSession, 'simultaneous dial; the other session is kept');
      }
    } else {
      this.#sessions.set(peer, session);
    }
    this.#setState(peer, 'connected');
    this.#log.info({ peer, role: session.role, remote: session.remote, expiresAt: new Date(session.expiresAt).toISOString() }, 'session established');
    session.on('close', (code, reason) => this.#onSessionClosed(session, code, reason));
    const dialer = this.#runtime.get(peer)?.dialer;
    if (session.role === 'dialler') {
      const ttl = session.expiresAt - this.#opts.now();
      dialer?.reauthAt(Math.max(0, ttl - Math.min(ttl * 0.25, 300_000)));
    } else {
      dialer?.cancelReauth();
    }
    for (const m of own.rest()) session.send(m);
    this.emit('session', session);
  }

  /**
   * A session admitted by grant ends when the grant expires (the session
   * keeps that time), unless the peer sends a refreshed one inside the
   * session first.
   */
  #watchGrant(session: Session): void {
    session.on('message', (m) => {
      if (m.type !== 'grants' || !m.grants.length) return;
      void this.#opts.trust.admission(session.peer, session.grant!.key.x, m.grants).then((g) => {
        if (g && g.exp > session.grant!.exp) {
          session.regrant(g);
          this.#log.info({ peer: session.peer, expiresAt: new Date(g.exp * 1000).toISOString() }, 'peer refreshed its grant');
        }
      });
    });
  }

  /**
   * After a change of authorities, grants or revocations: closes sessions of
   * revoked nodes, and grant sessions whose grant no longer admits them.
   */
  async recheck(): Promise<void> {
    for (const session of [...this.#sessions.values()]) {
      if (this.#opts.trust.isRevoked(session.peer)) {
        session.close(Close.peerRevoked, 'revoked');
        continue;
      }
      if (session.grant && !this.#byId.has(session.peer)) {
        const g = await this.#opts.trust.admission(session.peer, session.grant.key.x, [session.grant.token]);
        if (!g) session.close(Close.grantRequired, 'grant no longer valid here');
      }
    }
  }

  #replace(old: Session, next: Session, kind: CloseKind, detail: string): void {
    this.#sessions.set(next.peer, next);
    old.close(kind, detail);
  }

  #onSessionClosed(session: Session, code: number, reason: string): void {
    this.#log.info({ peer: session.peer, code, reason }, 'session closed');
    if (this.#sessions.get(session.peer) !== session) return;
    this.#sessions.delete(session.peer);
    const entry = this.#byId.get(session.peer);
    if (entry) this.#setState(session.peer, entry.revoked ? 'revoked' : 'disconnected');
    this.emit('sessionClosed', session, code, reason);
    this.#runtime.get(session.peer)?.dialer?.kick();
  }

  #drop(peer: NodeId, kind: CloseKind, detail: string): void {
    const rt = this.#runtime.get(peer);
    rt?.dialer?.stop();
    this.#runtime.delete(peer);
    this.#sessions.get(peer)?.close(kind, detail);
    for (const s of this.#pending) if ('peer' in s && s.peer === peer) s.close(kind, detail);
    this.#log.info({ peer, code: kind.code }, `peer ${detail}; session closed`);
  }

  /**
   * A TCP connection that has not sent its upgrade yet holds a file
   * descriptor until the header timeout: beyond CONNECTING_SHARE times the
   * handshake caps (in all, and from one address) it is closed at once, so
   * idle connections cannot use up the descriptors the store and apps need.
   */
  #onConnection(socket: Socket): void {
    const address = socket.remoteAddress;
    if (address === undefined) return void socket.destroy();
    if (this.#connecting.full(address)) {
      this.#count('connection_limit');
      this.#log.debug({ remote: address }, 'peer connection closed: too many not yet upgraded');
      return void socket.destroy();
    }
    this.#connecting.take(socket, address);
    socket.once('close', () => this.#connecting.release(socket));
  }

  #upgrade(wss: WebSocketServer, req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.#connecting.release(req.socket);
    socket.on('error', () => socket.destroy());
    const address = req.socket.remoteAddress ?? '?';
    const remote = `${req.socket.remoteAddress}:${req.socket.remotePort}`;
    const refuse = (kind: CloseKind, detail: string) => {
      this.#count(kind.name);
      wss.handleUpgrade(req, socket, head, (ws) => this.#refuseUpgraded(ws, kind, detail));
      this.#log.warn({ code: kind.code, reason: detail, remote }, 'peer refused');
    };
    if (this.#stopped) return refuse(Close.goingAway, 'node stopping');
    const full = this.#unauthenticated.full(address);
    if (full === 'all') return refuse(Close.busy, 'too many unauthenticated connections');
    if (full === 'address') return refuse(Close.busy, 'too many unauthenticated connections from this address');
    if (!this.#rate.allow(addressGroup(address))) return refuse(Close.rateLimited, 'too many handshakes from this address');
    wss.handleUpgrade(req, socket, head, (ws) => this.#accept(ws, remote, address));
  }

  /**
   * Closes a connection refused right after its upgrade: it holds no slot, so
   * it reads no more than a hello's worth and is gone within a second, whether
   * or not the peer answers the close.
   */
  #refuseUpgraded(ws: WebSocket, kind: CloseKind, detail: string): void {
    ws.on('error', () => undefined);
    readAtMost(ws, this.#opts.config.maxPreAuthBytes + 4096);
    ws.close(kind.code, closeReason(kind, detail));
    setTimeout(() => ws.terminate(), 1000).unref();
  }

  #accept(ws: WebSocket, remote: string, address: string): void {
    ws.on('error', () => undefined);
    if (ws.protocol !== SUBPROTOCOL) {
      this.#count(Close.handshakeInvalid.name);
      this.#log.warn({ code: Close.handshakeInvalid.code, reason: 'no tessera.v1 subprotocol', remote }, 'peer refused');
      return this.#refuseUpgraded(ws, Close.handshakeInvalid, 'subprotocol tessera.v1 required');
    }
    this.#unauthenticated.take(ws, address);
    this.#pending.add(ws);
    let claimed: string | undefined;
    const own = opening(this.#opts.grants);
    acceptHandshake(ws, this.#settings, remote, (hello) => this.#admit(hello), own.first, (id) => (claimed = id))
      .then(({ session, admission, peerKey }) => {
        this.#count('ok');
        if (admission.kind === 'pinned') {
          this.#release(ws);
          return this.#whenReady(session, own);
        }
        // Anyone can sign a handshake with a key of its own: a peer admitted
        // by grant holds its unauthenticated slot until its grant is verified.
        return this.#whenReady(session, own, peerKey).finally(() => this.#release(ws));
      })
      .catch((err: unknown) => {
        this.#release(ws);
        this.#count(err instanceof PeerRefusal ? err.kind.name : err instanceof RemoteClosed ? 'peer_closed' : 'error');
        if (err instanceof PeerRefusal) this.#log.warn({ code: err.kind.code, reason: err.message, claimedId: claimed, remote }, 'peer refused');
        else if (err instanceof RemoteClosed) this.#log.info({ code: err.code, reason: err.reason, claimedId: claimed, remote }, 'peer left during the handshake');
        else this.#log.error({ err, claimedId: claimed, remote }, 'handshake failed');
      });
  }

  #count(result: string): void {
    this.handshakes.set(result, (this.handshakes.get(result) ?? 0) + 1);
  }

  #release(ws: WebSocket): void {
    this.#pending.delete(ws);
    this.#unauthenticated.release(ws);
  }

  #admit(hello: Hello): Admission {
    const entry = this.#byId.get(hello.from);
    if (entry?.revoked || this.#opts.trust.isRevoked(hello.from)) return { kind: 'refuse', refusal: new PeerRefusal(Close.peerRevoked, 'revoked') };
    if (entry) return { kind: 'pinned', key: entry.publicKey };
    if (this.#peers.authorities.length) return { kind: 'grant' };
    return { kind: 'refuse', refusal: new PeerRefusal(Close.unknownPeer, 'this node does not know you') };
  }

  /** Closes every session and the listener. Safe to call twice. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const rt of this.#runtime.values()) rt.dialer?.stop();
    for (const s of this.#sessions.values()) s.close(Close.goingAway, 'node stopping');
    for (const p of this.#pending) if ('terminate' in p) p.terminate();
    else p.close(Close.goingAway, 'node stopping');
    this.#wss?.close();
    const server = this.#server;
    if (server) {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    }
  }
}
