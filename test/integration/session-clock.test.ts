/**
 * Peer sessions keep time by the node's clock (the daemon's injected `now`),
 * not only by a timer: Node's timers stop while the machine sleeps, the clock
 * does not. A session is established and expires by that clock, and one whose
 * lifetime has passed is closed with 4012 (session_expired) on the next frame
 * that arrives or would be sent, without waiting for its expiry timer (here an
 * hour away in real time); one admitted by a grant is closed with 4019 the
 * same way once the grant's expiry passes. Two real nodes on 127.0.0.1, port 0, with their own
 * LevelDB folders; only the first node's clock is moved.
 */
import { describe, expect, it } from 'vitest';
import { Close } from '../../src/protocol/close-codes.js';
import type { Session } from '../../src/net/session.js';
import type { SessionMessage } from '../../src/protocol/messages.js';
import type { NodeId } from '../../src/types.js';
import { entryFor, setPeers, testNode, type TestNode } from '../helpers/cluster.js';
import { waitUntil } from '../helpers/wait.js';
import { authority, grantFor, write, writeGrants } from '../helpers/authority.js';
import { getDoc } from '../helpers/docs.js';

const TTL_MS = 3_600_000;
/** Ahead of the real clock, within clockTolerance (30 s): handshakes still verify both ways. */
const AHEAD_MS = 10_000;
const grants: SessionMessage = { type: 'grants', grants: [], revocations: [] };

const live = (s: Session | undefined) => (s?.ready && !s.closed ? s : undefined);

/** `a` (its clock `AHEAD_MS` ahead, movable) dials `b`; resolves with both ends of their session. */
async function pair(config: Record<string, unknown> = {}): Promise<{ a: TestNode; b: TestNode; clock: { skew: number }; atA: Session; atB: Session; before: number }> {
  const clock = { skew: AHEAD_MS };
  const a = await testNode('a', { sessionTtl: '1h', ...config }, undefined, { now: () => Date.now() + clock.skew });
  const b = await testNode('b', { sessionTtl: '1h' });
  const before = Date.now();
  await setPeers(b, [entryFor(a, { dial: false })]);
  await setPeers(a, [entryFor(b)]);
  const atA = await waitUntil(() => live(a.daemon.peerManager.session(b.id as NodeId)), { what: 'a holds a session with b' });
  const atB = await waitUntil(() => live(b.daemon.peerManager.session(a.id as NodeId)), { what: 'b holds a session with a' });
  return { a, b, clock, atA, atB, before };
}

/** A hub (its clock `AHEAD_MS` ahead, movable) that trusts an authority, and `fresh`, admitted by a 10-minute grant alone. */
async function grantedPair() {
  const admin = await authority();
  const clock = { skew: AHEAD_MS };
  const hub = await testNode('hub', { sessionTtl: '1h' }, undefined, { now: () => Date.now() + clock.skew });
  const fresh = await testNode('fresh', { sessionTtl: '1h' });
  await setPeers(hub, [], [admin.entry]);
  await writeGrants(fresh, [await grantFor(admin, fresh, ['**'], ['**'], 600_000)]);
  await setPeers(fresh, [entryFor(hub)]);
  const atHub = await waitUntil(() => live(hub.daemon.peerManager.session(fresh.id as NodeId)), { what: 'the hub admits fresh by its grant' });
  const atFresh = await waitUntil(() => live(fresh.daemon.peerManager.session(hub.id as NodeId)), { what: 'fresh holds a session with the hub' });
  expect(atHub.grant).toBeDefined();
  return { clock, hub, fresh, atHub, atFresh };
}

/** Resolves when `s` next receives a grants message. */
const nextGrants = (s: Session) => new Promise<void>((resolve) => {
  const on = (m: SessionMessage) => {
    if (m.type !== 'grants') return;
    s.off('message', on);
    resolve();
  };
  s.on('message', on);
});

/** The code a session closed with. */
const closedWith = (s: Session) => new Promise<number>((resolve) => s.once('close', (code) => resolve(code)));

describe('peer sessions keep time by the node\'s clock', () => {
  it('are established and expire by the injected clock', async () => {
    const { atA, before } = await pair();
    expect(atA.establishedAt).toBeGreaterThanOrEqual(before + AHEAD_MS);
    expect(atA.expiresAt - atA.establishedAt).toBeGreaterThan(TTL_MS - 1000);
    expect(atA.expiresAt - atA.establishedAt).toBeLessThanOrEqual(TTL_MS);
  });

  it('one whose lifetime passed by the clock is closed 4012 on the next frame that arrives, before its timer', async () => {
    const { a, clock, atA, atB } = await pair();
    const atBClosed = closedWith(atB);
    const atAClosed = closedWith(atA);
    // The machine slept past the session's end: the clock moved on, the expiry timer did not.
    clock.skew = AHEAD_MS + TTL_MS + 60_000;
    atB.send(grants);
    expect(await atAClosed).toBe(Close.sessionExpired.code);
    expect(await atBClosed).toBe(Close.sessionExpired.code);
    expect(a.lines.some((l) => l.msg === 'session closed' && l.code === Close.sessionExpired.code)).toBe(true);
  });

  it('one whose lifetime passed by the clock is closed 4012 instead of sending its next frame', async () => {
    const { clock, atA, atB } = await pair();
    let delivered = 0;
    atB.on('message', () => delivered++);
    const atBClosed = closedWith(atB);
    clock.skew = AHEAD_MS + TTL_MS + 60_000;
    atA.send(grants);
    expect(atA.closed).toBe(true);
    expect(await atBClosed).toBe(Close.sessionExpired.code);
    expect(delivered).toBe(0);
  });

  it('one admitted by a grant whose expiry passed by the clock is closed 4019 on the next frame in, before its timer', async () => {
    const { clock, atHub, atFresh } = await grantedPair();
    const closed = closedWith(atHub);
    // Past the grant's 10 minutes by the hub's clock, well within the session's hour.
    clock.skew = AHEAD_MS + 1_200_000;
    atFresh.send(grants);
    expect(await closed).toBe(Close.grantRequired.code);
  });

  it('one admitted by a grant whose expiry passed by the clock is sent nothing more: closed 4019 instead of the next envelope', async () => {
    const { clock, hub, fresh, atHub } = await grantedPair();
    // Replication works while the grant is valid.
    await write(hub, 'notes/before', (d) => d.getMap('m').set('k', 1));
    await waitUntil(async () => (await getDoc(fresh, 'notes/before')).status === 200, { what: 'fresh reads notes/before' });
    let code: number | undefined;
    atHub.once('close', (c) => (code = c));
    // fresh sends nothing: only the hub's next frame out can notice.
    clock.skew = AHEAD_MS + 1_200_000;
    await write(hub, 'notes/after-expiry', (d) => d.getMap('m').set('k', 'must not reach fresh'));
    const outcome = await waitUntil(async () => (code !== undefined ? `closed ${code}` : (await getDoc(fresh, 'notes/after-expiry')).status === 200 ? 'sent to fresh' : undefined), {
      what: 'the hub either closes the expired session or sends it the new document',
      timeoutMs: 5_000,
    });
    expect(outcome).toBe(`closed ${Close.grantRequired.code}`);
    expect((await getDoc(fresh, 'notes/after-expiry')).status).toBe(404);
  });

  it('refill their rate limit by the clock: a peer that keeps within its rate by the node\'s clock is not throttled', async () => {
    // 32 bytes/s (64 of burst): without a refill, a second frame of about 50 bytes is over the rate.
    const { clock, atA, atB } = await pair({ maxPeerBytesPerSecond: 32 });
    const before = atA.throttles;
    for (let i = 0; i < 5; i++) {
      clock.skew += 10_000;
      const got = nextGrants(atA);
      atB.send(grants);
      await got;
    }
    expect(atA.throttles).toBe(before);
    expect(atA.closed).toBe(false);
  });
});
