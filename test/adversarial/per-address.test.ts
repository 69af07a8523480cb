/**
 * The share of unauthenticated connections one remote address may hold
 * (`maxUnauthenticatedPerAddress`, DESIGN.md §9), against real nodes over
 * real sockets: beyond its share an address is refused 4015 while other
 * addresses still get in, and its slots come back exactly once when a
 * connection leaves, fails, authenticates or times out. The two addresses
 * are 127.0.0.1 (which a dual-stack listener on `[::]` sees as
 * ::ffff:127.0.0.1) and ::1.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { generateKeyPair } from '../../src/identity/keys.js';
import { Close } from '../../src/protocol/close-codes.js';
import type { NodeId } from '../../src/types.js';
import { entryFor, setPeers, testNode } from '../helpers/cluster.js';
import { crosses, inProcess } from '../helpers/docs.js';
import { waitUntil } from '../helpers/wait.js';
import { arena, enterSession, expectClose, expectNoSession, expectUndisturbed, listed, ready, type Arena } from './arena.js';
import { RawPeer, honestDial, makeHello } from './raw-peer.js';

const BUSY_ADDRESS = 'busy: too many unauthenticated connections from this address; retry: yes';
const BUSY_ALL = 'busy: too many unauthenticated connections; retry: yes';

/** The target's peer listener as seen from ::1 (the target listens on `[::]`). */
const v6url = (a: Arena) => `ws://[::1]:${a.target.daemon.peerAddress.port}`;

/** A connection that gets a slot: it is let into the handshake, and refused there as an unknown peer (4004). */
async function admitted(a: Arena, url = a.target.url): Promise<void> {
  const peer = await RawPeer.connect(url);
  peer.text(makeHello((await generateKeyPair()).id, a.target.id).bytes);
  await expectClose(peer, Close.unknownPeer.code);
}

/** A connection refused at the upgrade with 4015 and `reason`. */
async function refused(url: string, reason: string): Promise<void> {
  const peer = await RawPeer.connect(url);
  expect((await expectClose(peer, Close.busy.code)).reason).toBe(reason);
}

/** Opens `n` connections that send nothing: each holds a slot until it leaves or times out. */
const stall = (url: string, n: number) => Promise.all(Array.from({ length: n }, () => RawPeer.connect(url)));

/** How many log lines of the target match. */
const logged = (a: Arena, match: (l: Record<string, unknown>) => boolean) => a.target.lines.filter(match).length;
const leftLine = (l: Record<string, unknown>) => l.msg === 'peer left during the handshake';

/** Closes `peer` from our side and waits until the target has noticed (and given its slot back). */
async function leave(a: Arena, peer: RawPeer): Promise<void> {
  const before = logged(a, leftLine);
  peer.ws.terminate();
  await waitUntil(() => logged(a, leftLine) > before, { what: 'the target notices the stalled peer left' });
}

describe('unauthenticated connections per address', () => {
  it('with maxUnauthenticatedPerAddress 2, a 3rd concurrent socket from one address gets 4015; slots come back once when a peer fails, leaves or authenticates', async () => {
    const a = await arena({ maxUnauthenticatedPerAddress: 2 }); // maxUnauthenticated stays 64
    for (let i = 0; i < 3; i++) await admitted(a); // refused handshakes give their slot back

    const stalled = await stall(a.target.url, 2);
    await refused(a.target.url, BUSY_ADDRESS);
    for (const s of stalled) expect(s.closedWith).toBeUndefined();

    // One leaves: one slot back, and one only.
    await leave(a, stalled[0]!);
    // One authenticates with it: its slot comes back at authentication, and not again when its session ends.
    const s = await honestDial(a.target.url, a.mallory, a.target.id);
    const session = await enterSession(a, s, a.mallory);
    s.peer.ws.close(1000);
    await waitUntil(() => session.closed, { what: 'the authenticated session closed' });
    await expectNoSession(a, a.mallory.id);
    // One authenticates and then fails before its session is ready (a forged first frame): given back at authentication only.
    const forged = await honestDial(a.target.url, a.mallory, a.target.id);
    forged.peer.binary(randomBytes(40));
    await expectClose(forged.peer, Close.frameInvalid.code);
    await expectNoSession(a, a.mallory.id);

    // stalled[1] still holds one slot: exactly one more gets in.
    const again = await stall(a.target.url, 1);
    await refused(a.target.url, BUSY_ADDRESS);
    expect([stalled[1]!.closedWith, again[0]!.closedWith]).toEqual([undefined, undefined]);
    await expectUndisturbed(a);
  });

  it('a burst from one address is admitted up to its share; those slots come back at the handshake deadline', async () => {
    const a = await arena({ maxUnauthenticatedPerAddress: 2, handshakeTimeout: '2s' });
    const burst = await stall(a.target.url, 6);
    const closes = await Promise.all(burst.map((p) => p.closeWithin()));
    expect(closes.map((c) => c.code).sort()).toEqual([...Array(2).fill(Close.handshakeTimeout.code), ...Array(4).fill(Close.busy.code)]);
    for (const c of closes.filter((c) => c.code === Close.busy.code)) expect(c.reason).toBe(BUSY_ADDRESS);
    await waitUntil(() => logged(a, (l) => l.msg === 'peer refused' && l.code === Close.handshakeTimeout.code) === 2, { what: 'the target logs both timed-out handshakes' });

    // The whole share is free again: two at once get in, a third does not.
    const next = await stall(a.target.url, 2);
    await refused(a.target.url, BUSY_ADDRESS);
    for (const p of next) p.text(makeHello((await generateKeyPair()).id, a.target.id).bytes);
    for (const p of next) await expectClose(p, Close.unknownPeer.code);
    await expectUndisturbed(a);
  });

  it('an honest peer dialling from ::1 completes its handshake and replicates while 127.0.0.1 holds its full share', async () => {
    const a = await arena({ listen: '[::]:0', maxUnauthenticatedPerAddress: 3, handshakeTimeout: '1m' });
    const stalled = await stall(a.target.url, 3);
    await refused(a.target.url, BUSY_ADDRESS);

    // A second honest node, which the target knows but does not dial: it comes in through the listener, from ::1.
    const guest = await testNode('guest');
    await setPeers(a.target, [entryFor(a.honest), listed('mallory', a.mallory), entryFor(guest, { dial: false })]);
    await setPeers(guest, [{ ...entryFor(a.target), url: v6url(a) }]);
    const session = await waitUntil(() => ready(a.target.daemon.peerManager.session(guest.id as NodeId)), { what: 'the target keeps a session with the guest' });
    expect(session.role).toBe('listener');
    expect(session.remote).toMatch(/^::1:\d+$/);
    await crosses(guest, inProcess(a.target), 'guest/in', 'from-guest');
    await crosses(a.target, inProcess(guest), 'guest/out', 'to-guest');

    // All the while, 127.0.0.1 held its whole share, and still does.
    for (const s of stalled) expect(s.closedWith).toBeUndefined();
    await refused(a.target.url, BUSY_ADDRESS);
    await expectUndisturbed(a);
  });

  it('on a dual-stack listener, 127.0.0.1 and ::1 have a share each, within maxUnauthenticated in all', async () => {
    const a = await arena({ listen: '[::]:0', maxUnauthenticated: 3, maxUnauthenticatedPerAddress: 2 });
    const v4 = await stall(a.target.url, 2);
    await refused(a.target.url, BUSY_ADDRESS);
    await stall(v6url(a), 1); // ::1 is not 127.0.0.1's group, though ::ffff:127.0.0.1 lies in ::/64
    await refused(v6url(a), BUSY_ALL); // 3 slots held in all
    await refused(a.target.url, BUSY_ALL);

    await leave(a, v4[0]!);
    await admitted(a, v6url(a));
    await expectUndisturbed(a);
  });
});
