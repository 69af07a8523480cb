/**
 * A raw sync peer for replication tests: it holds a listed identity, dials a
 * node with the real handshake (the pure functions of src/protocol), sends
 * its grants first, and then speaks the sync messages as the test says, so it
 * can offer envelopes that no honest node would: altered, replayed, garbage,
 * conflicting, or signed with any key it likes.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { onTestFinished } from 'vitest';
import WebSocket from 'ws';
import * as Y from 'yjs';
import { importPublicJwk, type KeyPair } from '../../src/identity/keys.js';
import { FrameCipher } from '../../src/protocol/frames.js';
import {
  SUBPROTOCOL,
  b64u,
  deriveSessionKeys,
  encodeHello,
  signDiallerToken,
  transcript,
  verifyListenerToken,
  x25519Public,
} from '../../src/protocol/handshake.js';
import { decodeMessage, encodeMessage, type SessionMessage } from '../../src/protocol/messages.js';
import { signEnvelope, updateHash } from '../../src/sync/envelope.js';
import type { DocName, FeedId, NodeId, PublicJwk } from '../../src/types.js';
import { parseUpdate, structRanges, type ClientRanges } from '../../src/yjs/parse.js';

export interface Closed {
  readonly code: number;
  readonly reason: string;
}

/** What a peers file lists for a raw peer (no url: it is not dialled). */
export function rawEntry(name: string, pair: KeyPair, perms: { read?: string[]; write?: string[] } = {}): Record<string, unknown> {
  return { name, id: pair.id, publicKey: pair.publicJwk, read: perms.read ?? ['**'], write: perms.write ?? ['**'] };
}

/** An authenticated, encrypted session with one node, driven by hand. */
export class RawSyncPeer {
  readonly self: KeyPair;
  /** Every message the node sent, decrypted, in order (its grants first). */
  readonly received: SessionMessage[] = [];
  /** Frames from the node that failed to open or decode (the socket is then dropped). */
  readonly errors: Error[] = [];
  readonly closed: Promise<Closed>;
  readonly #ws: WebSocket;
  readonly #seal: FrameCipher;
  readonly #waiters = new Set<() => void>();
  #closedWith: Closed | undefined;

  private constructor(self: KeyPair, ws: WebSocket, seal: FrameCipher, closed: Promise<Closed>) {
    this.self = self;
    this.#ws = ws;
    this.#seal = seal;
    this.closed = closed.then((c) => {
      this.#closedWith = c;
      this.#wake();
      return c;
    });
  }

  /**
   * Dials `url` as `self` (which the node must list), completes the
   * handshake, sends an empty grants message and waits for the node's.
   */
  static async dial(url: string, self: KeyPair, node: { id: string; publicKey: PublicJwk }): Promise<RawSyncPeer> {
    const ws = new WebSocket(url, SUBPROTOCOL, { perMessageDeflate: false, followRedirects: false });
    onTestFinished(() => ws.terminate());
    ws.on('error', () => undefined);
    const frames: { data: Buffer; isBinary: boolean }[] = [];
    let wake: (() => void) | undefined;
    // Handshake frames are queued; once the keys are known, `session` takes every frame.
    let session: ((data: Buffer) => void) | undefined;
    ws.on('message', (data, isBinary) => {
      if (session) return session(data as Buffer);
      frames.push({ data: data as Buffer, isBinary });
      wake?.();
    });
    const closed = new Promise<Closed>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const nextFrame = async (): Promise<{ data: Buffer; isBinary: boolean }> => {
      const deadline = Date.now() + 15_000;
      while (!frames.length) {
        if (ws.readyState !== WebSocket.OPEN) throw new Error(`socket closed during the handshake: ${JSON.stringify(await closed)}`);
        if (Date.now() > deadline) throw new Error('no handshake message within 15s');
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 100);
        });
      }
      return frames.shift()!;
    };

    const eph = generateKeyPairSync('x25519');
    const nonce = b64u(randomBytes(32));
    const m1 = encodeHello({ from: self.id, to: node.id as NodeId, epk: x25519Public(eph.publicKey), nonce });
    ws.send(Buffer.from(m1).toString('utf8'));
    const th1 = transcript(undefined, m1);
    const m2 = await nextFrame();
    const m2text = m2.data.toString('utf8');
    const ctx = { self: self.id, now: Date.now(), clockToleranceS: 30 };
    const v = await verifyListenerToken(m2text, importPublicJwk(node.publicKey), { ...ctx, listener: node.id as NodeId, dialerNonce: nonce, th1 });
    const th2 = transcript(th1, m2.data);
    const m3 = await signDiallerToken({
      signer: self,
      publicJwk: self.publicJwk,
      audience: node.id as NodeId,
      iat: Math.floor(Date.now() / 1000),
      jti: b64u(randomBytes(16)),
      sessionTtlS: 3600,
      listenerNonce: v.payload.snonce!,
      th2,
    });
    const th3 = transcript(th2, Buffer.from(m3));
    const keys = deriveSessionKeys(eph.privateKey, v.payload.epk!, th3);
    const open = new FrameCipher(keys.l2d);
    const peer = new RawSyncPeer(self, ws, new FrameCipher(keys.d2l), closed);
    // From here every frame is a sealed session message, in order.
    session = (data: Buffer) => {
      try {
        peer.received.push(decodeMessage(open.open(data)));
      } catch (err) {
        peer.errors.push(err as Error);
        ws.terminate();
      }
      peer.#wake();
    };
    for (const f of frames.splice(0)) session(f.data);
    ws.send(m3);
    peer.send({ type: 'grants', grants: [], revocations: [] });
    await peer.waitFor((m) => m.type === 'grants');
    return peer;
  }

  get closedWith(): Closed | undefined {
    return this.#closedWith;
  }

  get isOpen(): boolean {
    return this.#ws.readyState === WebSocket.OPEN && !this.#closedWith;
  }

  send(message: SessionMessage): void {
    this.#ws.send(this.#seal.seal(encodeMessage(message)), { binary: true });
  }

  /** Sends envelopes (token and update bytes) in one message. */
  offer(...items: { token: string; update: Uint8Array }[]): void {
    this.send({ type: 'envelopes', items });
  }

  /** The first message (already received or to come) matching `pred`. */
  async waitFor<T extends SessionMessage>(pred: (m: SessionMessage) => m is T, timeoutMs?: number): Promise<T>;
  async waitFor(pred: (m: SessionMessage) => boolean, timeoutMs?: number): Promise<SessionMessage>;
  async waitFor(pred: (m: SessionMessage) => boolean, timeoutMs = 20_000): Promise<SessionMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.received.find(pred);
      if (m) return m;
      if (this.#closedWith) throw new Error(`session closed: ${this.#closedWith.code} ${this.#closedWith.reason}`);
      if (Date.now() > deadline) throw new Error('timed out waiting for a message from the node');
      await new Promise<void>((r) => {
        const w = () => {
          this.#waiters.delete(w);
          r();
        };
        this.#waiters.add(w);
        setTimeout(w, 100);
      });
    }
  }

  /** Every envelope the node sent on this session, in order. */
  envelopes(): { token: string; update: Uint8Array }[] {
    return this.received.flatMap((m) => (m.type === 'envelopes' ? m.items : []));
  }

  #wake(): void {
    for (const w of [...this.#waiters]) w();
  }

  close(): void {
    this.#ws.close(1000, 'test done');
  }
}

export const newFeed = (): FeedId => randomBytes(16).toString('base64url') as FeedId;

/**
 * An envelope signed with `key` (by default `origin`'s): honest claims for
 * `update` unless overridden, so a test can lie about any of them.
 */
export function envelope(
  origin: KeyPair,
  o: { doc: string; feed: FeedId; seq: number; update: Uint8Array; clients?: ClientRanges; h?: string; iss?: string; key?: KeyPair },
): { token: string; update: Uint8Array } {
  let clients = o.clients;
  if (!clients) {
    try {
      clients = structRanges(parseUpdate(o.update).structs);
    } catch {
      clients = [];
    }
  }
  const token = signEnvelope(
    {
      iss: (o.iss ?? origin.id) as NodeId,
      doc: o.doc as DocName,
      feed: o.feed,
      seq: o.seq,
      h: o.h ?? updateHash(o.update),
      clients,
      iat: Math.floor(Date.now() / 1000),
    },
    (o.key ?? origin).privateKey,
  );
  return { token, update: o.update };
}

/** A V1 update from a fresh doc with a fixed client id: `fn` makes the change. */
export function yUpdate(clientID: number, fn: (d: Y.Doc) => void, base?: Uint8Array): Uint8Array {
  const d = new Y.Doc({ gc: true });
  d.clientID = clientID;
  if (base) Y.applyUpdate(d, base);
  const before = Y.encodeStateVector(d);
  d.transact(() => fn(d));
  return Y.encodeStateAsUpdate(d, before);
}
