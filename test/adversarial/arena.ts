/**
 * The stage for the handshake attacks: a target node under attack, a third,
 * honest node with an established session to it, and an identity the target
 * lists for the attacker; plus the checks every attack ends with.
 */
import { expect, onTestFinished } from 'vitest';
import { generateKeyPair, type KeyPair } from '../../src/identity/keys.js';
import type { Session } from '../../src/net/session.js';
import type { SessionMessage } from '../../src/protocol/messages.js';
import type { NodeId } from '../../src/types.js';
import { entryFor, setPeers, testNode, type TestNode } from '../helpers/cluster.js';
import { waitUntil } from '../helpers/wait.js';
import { RawPeer, emptyGrants, makeHello, readReply, sealMessage, type Closed, type RawSession } from './raw-peer.js';

export interface Arena {
  /** The node under attack. */
  readonly target: TestNode;
  /** A third, honest node with an established session to the target. */
  readonly honest: TestNode;
  /** A key pair the target lists (read and write everything): the attacker's own identity. */
  readonly mallory: KeyPair;
  /** The target's kept session with the honest node, captured before the attack. */
  readonly kept: Session;
  /** The honest node's end of that session. */
  readonly honestSide: Session;
}

export const listed = (name: string, pair: KeyPair, url?: string): Record<string, unknown> => ({
  name,
  id: pair.id,
  publicKey: pair.publicJwk,
  ...(url ? { url } : {}),
  read: ['**'],
  write: ['**'],
});

/**
 * A target node (with `config` in its tessera.json) that dials an honest
 * node, so the honest session costs the target's listener no
 * unauthenticated slot and no rate-limit hit; `extra` peers entries are added.
 */
export async function arena(config: Record<string, unknown> = {}, extra: Record<string, unknown>[] = []): Promise<Arena> {
  const target = await testNode('target', config);
  const honest = await testNode('honest');
  const mallory = await generateKeyPair();
  await setPeers(honest, [entryFor(target, { dial: false })]);
  await setPeers(target, [entryFor(honest), listed('mallory', mallory), ...extra]);
  const kept = await waitUntil(() => ready(target.daemon.peerManager.session(honest.id as NodeId)), { what: 'target holds a ready session with the honest node' });
  const honestSide = await waitUntil(() => ready(honest.daemon.peerManager.session(target.id as NodeId)), { what: 'honest node holds a ready session with the target' });
  return { target, honest, mallory, kept, honestSide };
}

export const ready = (s: Session | undefined): Session | undefined => (s?.ready && !s.closed ? s : undefined);

/** The next `grants` message on a session (sync messages may come and go meanwhile). */
export function nextGrants(s: Session, timeoutMs = 10_000): Promise<SessionMessage> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: SessionMessage) => {
      if (m.type !== 'grants') return;
      clearTimeout(timer);
      s.off('message', onMessage);
      resolve(m);
    };
    const timer = setTimeout(() => {
      s.off('message', onMessage);
      reject(new Error('no grants message arrived on the honest session'));
    }, timeoutMs);
    s.on('message', onMessage);
  });
}

/** The node still serves, and the honest session is the same, open, and carries frames both ways. */
export async function expectUndisturbed(a: Arena, opts: { secrets?: string[] } = {}): Promise<void> {
  const res = await fetch(`${a.target.api}/healthz`);
  expect(res.status).toBe(200);
  const pm = a.target.daemon.peerManager;
  expect(pm.session(a.honest.id as NodeId)).toBe(a.kept);
  expect([...pm.sessions()]).toContain(a.kept);
  expect(a.kept.closed).toBe(false);
  expect(a.honest.daemon.peerManager.session(a.target.id as NodeId)).toBe(a.honestSide);
  expect(a.honestSide.closed).toBe(false);
  const toHonest = nextGrants(a.honestSide);
  a.kept.send(emptyGrants);
  expect((await toHonest).type).toBe('grants');
  const toTarget = nextGrants(a.kept);
  a.honestSide.send(emptyGrants);
  expect((await toTarget).type).toBe('grants');
  // Never a token in a log (issue 3).
  const log = JSON.stringify(a.target.lines);
  for (const s of opts.secrets ?? []) expect(log.includes(s)).toBe(false);
}

/** Waits for the close the node sends and checks its code (one of `codes`) and the protocol's reason limit. */
export async function expectClose(peer: RawPeer, codes: number | number[]): Promise<Closed> {
  const closed = await peer.closeWithin();
  expect([codes].flat()).toContain(closed.code);
  expect(Buffer.byteLength(closed.reason)).toBeLessThanOrEqual(123);
  return closed;
}

/** No session with `id` is kept by the node (a refused attacker never got one). */
export async function expectNoSession(a: Arena, id: string): Promise<void> {
  await waitUntil(() => a.target.daemon.peerManager.session(id as NodeId) === undefined, { what: `no kept session for ${id}` });
}

/** Resolves with `p`, or fails with `what` if it takes longer than `ms` (a generous upper bound, not a timing under test). */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(what)), ms).unref())]);
}

/** Errors that escape every handler during this test (in a real daemon each would end the process). */
export function captureUncaught(): Error[] {
  const errors: Error[] = [];
  const onError = (err: Error) => errors.push(err);
  process.on('uncaughtException', onError);
  onTestFinished(() => void process.off('uncaughtException', onError));
  return errors;
}

/** An invalid WebSocket frame (reserved opcode 0x3, masked, empty), as the first bytes after the upgrade request. */
export const INVALID_FRAME = Buffer.from([0x83, 0x80, 0, 0, 0, 0]);

/** Opens a connection, sends an honest hello from `self`, and reads message 2. */
export async function startDial(a: Arena, self: { id: string }, to = a.target.id) {
  const peer = await RawPeer.connect(a.target.url);
  const hello = makeHello(self.id, to);
  peer.text(hello.bytes);
  const reply = await readReply(peer, hello);
  return { peer, hello, reply };
}

/** Sends our grants and waits until the node keeps the raw session. */
export async function enterSession(a: Arena, s: RawSession, self: KeyPair): Promise<Session> {
  s.peer.binary(sealMessage(s));
  return waitUntil(() => ready(a.target.daemon.peerManager.session(self.id as NodeId)), { what: 'the node keeps the raw session' });
}

/** The number of seconds in a clock_skew reason ("ahead by 120s", "behind by 200s"). */
export function skewIn(reason: string): number {
  const m = /(ahead|behind) by (\d+)s/.exec(reason);
  if (!m) throw new Error(`the reason does not name the skew: ${reason}`);
  return Number(m[2]);
}
