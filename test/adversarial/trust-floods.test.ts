/**
 * Grants and revocations arrive in `grants` messages from any peer, and a
 * relay keeps and passes on those it cannot verify (DESIGN.md §10). A listed
 * peer, even one with no permission at all, floods a node with well-formed
 * ones that nobody signed. The node keeps those apart from the ones that
 * verify against an authority it trusts, within small caps, and sends what
 * it holds in messages a receiver accepts, so that:
 *  - its later sessions (after a restart too) still open;
 *  - a genuine revocation from its own grants file still binds;
 *  - an honest set of more than 256 revocations crosses;
 *  - a granted node's genuine grant is neither pushed out nor refused room,
 *    so nodes that never met it still accept what it writes.
 */
import { describe, expect, it } from 'vitest';
import { Close } from '../../src/protocol/close-codes.js';
import type { GrantsMessage } from '../../src/protocol/messages.js';
import type { NodeId } from '../../src/types.js';
import { ready } from './arena.js';
import { entryFor, peerState, setPeers, status, testNode, type TestNode } from '../helpers/cluster.js';
import { getDoc } from '../helpers/docs.js';
import { authority, grantFor, nodeOn, revocationOf, write, writeGrants } from '../helpers/authority.js';
import { junkGrant, junkRevocation, randomId } from '../helpers/junk.js';
import { mallory } from '../helpers/mallory.js';
import { RawSyncPeer } from '../helpers/raw-peer.js';
import { waitUntil } from '../helpers/wait.js';

const junkRevocations = (n: number) => Array.from({ length: n }, () => junkRevocation());
const connected = async (a: TestNode, b: TestNode) => (await peerState(a, b)) === 'connected';

/** The grants messages a node sends a fresh session, up to its first announce (the rest of its grants come before it; the peer must read some document the node holds). */
async function opening(peer: RawSyncPeer): Promise<GrantsMessage[]> {
  await peer.waitFor((m) => m.type === 'announce');
  return peer.received.filter((m): m is GrantsMessage => m.type === 'grants');
}

describe('revocations pushed by a peer', () => {
  it('300 unverifiable ones from a peer with no permission: at most 256 are kept, and the node\'s sessions still open, after a restart too', async () => {
    const a = await testNode('a');
    const b = await testNode('b');
    await setPeers(b, [entryFor(a, { dial: false })]);
    // mallory may read, so that a new session of hers is announced something.
    const m = await mallory(a, [entryFor(b)], [], { read: ['**'] });
    await waitUntil(() => connected(a, b), { what: 'a-b link' });

    m.peer.send({ type: 'grants', grants: [], revocations: junkRevocations(150) });
    m.peer.send({ type: 'grants', grants: [], revocations: junkRevocations(150) });
    await m.settle();

    await a.daemon.stop();
    const a2 = await nodeOn(a.dir, 'a');
    await write(a2, 'shared/after', (d) => d.getMap('m').set('k', 2));
    await waitUntil(async () => (await getDoc(b, 'shared/after')).status === 200, { what: 'a write after the restart crosses to b' });
    expect(b.lines.filter((l) => l.msg === 'closing session' && l.code === Close.protocolError.code)).toEqual([]);

    const again = await RawSyncPeer.dial(a2.url, m.pair, a2);
    const grants = await opening(again);
    expect(again.errors).toEqual([]);
    expect(grants.flatMap((g) => g.revocations)).toHaveLength(256);
  });

  it('10 000 unverifiable ones do not stop a genuine revocation (of that very peer) from the node\'s own grants file', async () => {
    const admin = await authority();
    const a = await testNode('a');
    const m = await mallory(a, [], [admin.entry]);
    for (let k = 0; k < 40; k++) m.peer.send({ type: 'grants', grants: [], revocations: junkRevocations(250) });
    await m.settle();

    await writeGrants(a, [], [await revocationOf(admin, { id: m.pair.id })]);
    expect((await m.peer.closed).code).toBe(Close.peerRevoked.code);
    // Everything the node sent mallory until then was within the protocol's limits.
    expect(m.peer.errors).toEqual([]);
    expect((await status(a)).peers.find((p) => p.id === m.pair.id)?.state).toBe('revoked');
    await expect(RawSyncPeer.dial(a.url, m.pair, a)).rejects.toThrow(/4011/);
  }, 60_000);

  it('an honest set of 300 revocations from a trusted authority crosses a session, split within the per-message limit, and is passed on', async () => {
    const admin = await authority();
    const a = await testNode('a');
    const b = await testNode('b');
    const revocations = await Promise.all(Array.from({ length: 300 }, () => revocationOf(admin, { id: randomId() })));
    await writeGrants(a, [], revocations);
    await setPeers(b, [entryFor(a, { dial: false })], [admin.entry]);
    await setPeers(a, [entryFor(b)], [admin.entry]);
    a.daemon.peerManager.redialNow(b.id as NodeId);
    await waitUntil(() => connected(a, b), { what: 'a-b link' });
    await write(a, 'shared/doc', (d) => d.getMap('m').set('k', 1));
    // Envelopes come after the grants messages on the session: once b holds the write, it holds the revocations.
    await waitUntil(async () => (await getDoc(b, 'shared/doc')).status === 200, { what: 'a write crosses to b' });

    const m = await mallory(b, [entryFor(a, { dial: false })], [admin.entry], { read: ['**'] });
    const grants = await opening(m.peer);
    expect(m.peer.errors).toEqual([]);
    expect(grants.length).toBeGreaterThanOrEqual(2);
    expect(new Set(grants.flatMap((g) => g.revocations))).toEqual(new Set(revocations));
    expect(b.lines.filter((l) => l.msg === 'closing session' && l.code === Close.protocolError.code)).toEqual([]);
  }, 60_000);
});

describe('grants pushed by a peer', () => {
  it('unverifiable grants for a granted node, before and after it joins, do not push its genuine grant out: a node two hops away accepts what it writes', async () => {
    const admin = await authority();
    const hub = await testNode('hub');
    const far = await testNode('far');
    const g = await testNode('g');
    // far trusts the authority and pins the hub; it never meets g.
    await setPeers(far, [entryFor(hub, { dial: false })], [admin.entry]);
    const m = await mallory(hub, [entryFor(far)], [admin.entry]);
    await waitUntil(() => connected(hub, far), { what: 'hub-far link' });
    // Made-up grants for g (a public id): some claiming the hub's authority, some another one.
    const junk = () => [...Array.from({ length: 8 }, () => junkGrant(g.id, { iss: admin.id })), ...Array.from({ length: 8 }, () => junkGrant(g.id))];
    m.peer.send({ type: 'grants', grants: junk(), revocations: [] });
    await m.settle();

    await writeGrants(g, [await grantFor(admin, g)]);
    await setPeers(g, [entryFor(hub)]);
    await waitUntil(() => connected(g, hub), { what: 'g admitted by the hub' });
    m.peer.send({ type: 'grants', grants: junk(), revocations: [] });
    await m.settle();
    await write(g, 'g/doc', (d) => d.getMap('m').set('k', 'from g'));
    await waitUntil(async () => (await getDoc(far, 'g/doc')).status === 200, { what: 'far holds g\'s write' });
    expect(far.lines.some((l) => l.msg === 'envelope refused' && l.doc === 'g/doc')).toBe(false);
  });

  it('a relay that does not trust the authority keeps the grant its subject presented over made-up ones, and passes it on', async () => {
    const admin = await authority();
    const hub = await testNode('hub');
    const far = await testNode('far');
    const g = await testNode('g');
    await setPeers(far, [entryFor(hub, { dial: false })], [admin.entry]);
    // The hub pins g and trusts no authority: g's grant is, to it, just as unverifiable as mallory's.
    const m = await mallory(hub, [entryFor(far), entryFor(g, { dial: false })]);
    await writeGrants(g, [await grantFor(admin, g)]);
    await setPeers(g, [entryFor(hub)]);
    await waitUntil(async () => (await connected(g, hub)) && (await connected(hub, far)), { what: 'g-hub and hub-far links' });

    for (let k = 0; k < 3; k++) m.peer.send({ type: 'grants', grants: Array.from({ length: 8 }, () => junkGrant(g.id, { iss: admin.id })), revocations: [] });
    await m.settle();
    await write(g, 'g/doc', (d) => d.getMap('m').set('k', 'from g'));
    await waitUntil(async () => (await getDoc(far, 'g/doc')).status === 200, { what: 'far holds g\'s write, relayed by the hub' });
  });

  it('made-up grants naming a node, pushed to that node, come back with its envelopes but never count as presented by it: the relay keeps its genuine grant', async () => {
    const admin = await authority();
    // Short sessions: each new one passes on again what g holds for itself (grants go once per session).
    const hub = await testNode('hub', { sessionTtl: '2s' });
    const far = await testNode('far');
    const g = await testNode('g');
    await setPeers(hub, [entryFor(g, { dial: false })]);
    await writeGrants(g, [await grantFor(admin, g)]);
    // Mallory is a peer of g itself: g holds whatever it pushes, and passes on every grant naming g with g's envelopes.
    const m = await mallory(g, [entryFor(hub)]);
    await waitUntil(() => connected(g, hub), { what: 'g-hub link' });
    for (let round = 0; round < 3; round++) {
      m.peer.send({ type: 'grants', grants: Array.from({ length: 8 }, () => junkGrant(g.id, { exp: 9_000_000_000 + round })), revocations: [] });
      await m.settle();
      const before = g.daemon.peerManager.session(hub.id as NodeId);
      await waitUntil(() => ready(g.daemon.peerManager.session(hub.id as NodeId)) && g.daemon.peerManager.session(hub.id as NodeId) !== before, { what: 'a new g-hub session' });
      await write(g, 'g/doc', (d) => d.getMap('m').set(`k${round}`, round));
      await waitUntil(async () => (await getDoc(hub, 'g/doc')).status === 200, { what: 'the hub holds g\'s write' });
    }
    // far trusts the authority and meets g's writes only now, through the hub: with what the hub kept for g.
    await setPeers(far, [entryFor(hub, { dial: false })], [admin.entry]);
    await setPeers(hub, [entryFor(far), entryFor(g, { dial: false })]);
    await waitUntil(async () => (await getDoc(far, 'g/doc')).status === 200, { what: 'far holds g\'s writes, relayed by the hub' });
    expect(far.lines.some((l) => l.msg === 'envelope refused')).toBe(false);
  });

  it('a grant refreshed in the grants file reaches the relay inside the session as presented by its subject: made-up ones held there do not push it out', async () => {
    const admin = await authority();
    const hub = await testNode('hub');
    const far = await testNode('far');
    const g = await testNode('g');
    // The hub pins g and trusts no authority; mallory, a listed peer of the hub, has it hold made-up grants for g.
    const m = await mallory(hub, [entryFor(g, { dial: false })]);
    await writeGrants(g, [await grantFor(admin, g, ['**'], ['g/old/**'])]);
    await setPeers(g, [entryFor(hub)]);
    await waitUntil(() => connected(g, hub), { what: 'g-hub link' });
    m.peer.send({ type: 'grants', grants: Array.from({ length: 8 }, () => junkGrant(g.id, { iss: admin.id })), revocations: [] });
    await m.settle();
    const session = g.daemon.peerManager.session(hub.id as NodeId);
    const wider = await grantFor(admin, g, ['**'], ['g/**']);
    await writeGrants(g, [await grantFor(admin, g, ['**'], ['g/old/**']), wider]);
    await waitUntil(() => hub.daemon.trust.rawGrantsFor(g.id as NodeId).includes(wider), { what: 'the hub holds the refreshed grant' });
    expect(g.daemon.peerManager.session(hub.id as NodeId)).toBe(session);
    await write(g, 'g/new/doc', (d) => d.getMap('m').set('k', 1));
    await waitUntil(async () => (await getDoc(hub, 'g/new/doc')).status === 200, { what: 'the hub holds g/new/doc' });
    // far trusts the authority and meets g's write only now, through the hub.
    await setPeers(far, [entryFor(hub, { dial: false })], [admin.entry]);
    await setPeers(hub, [entryFor(far), entryFor(g, { dial: false })]);
    await waitUntil(async () => (await getDoc(far, 'g/new/doc')).status === 200, { what: 'far holds g/new/doc' });
    expect(far.lines.some((l) => l.msg === 'envelope refused' && l.doc === 'g/new/doc')).toBe(false);
  });

  it('50 000 made-up subjects: a node admitted by grant afterwards has its writes accepted', async () => {
    const admin = await authority();
    const hub = await testNode('hub');
    const m = await mallory(hub, [], [admin.entry]);
    for (let k = 0; k < 200; k++) m.peer.send({ type: 'grants', grants: Array.from({ length: 250 }, () => junkGrant(randomId())), revocations: [] });
    await m.settle();

    const n = await testNode('n');
    await writeGrants(n, [await grantFor(admin, n)]);
    await setPeers(n, [entryFor(hub)]);
    await waitUntil(async () => (await status(hub)).peers.some((p) => p.id === n.id && p.state === 'connected'), { what: 'the hub admits n by its grant' });
    await write(n, 'n/doc', (d) => d.getMap('m').set('k', 'from n'));
    await waitUntil(async () => (await getDoc(hub, 'n/doc')).status === 200, { what: 'the hub holds n\'s write', timeoutMs: 30_000 });
    expect(hub.lines.some((l) => l.msg === 'envelope refused' && l.doc === 'n/doc')).toBe(false);
  }, 120_000);
});
