import { describe, expect, it } from 'vitest';
import { entryFor, peerState, setPeers, status, testNode } from '../helpers/cluster.js';
import { waitUntil } from '../helpers/wait.js';

const connected = async (a: Awaited<ReturnType<typeof testNode>>, b: Awaited<ReturnType<typeof testNode>>) =>
  (await peerState(a, b)) === 'connected' && (await peerState(b, a)) === 'connected';

describe('peer sessions', () => {
  it('two nodes that list each other connect (one dials) and show connected with a since time', async () => {
    const a = await testNode('a');
    const b = await testNode('b');
    await setPeers(b, [entryFor(a, { dial: false })]);
    await setPeers(a, [entryFor(b)]);
    await waitUntil(() => connected(a, b), { what: 'both connected' });
    const s = await status(a);
    expect(s.peers[0]).toMatchObject({ id: b.id, name: 'b', state: 'connected' });
    expect(Date.parse(s.peers[0]!.since!)).not.toBeNaN();
  });

  it('simultaneous dial: exactly one session survives, the same on both sides', async () => {
    const a = await testNode('a');
    const b = await testNode('b');
    await Promise.all([setPeers(a, [entryFor(b)]), setPeers(b, [entryFor(a)])]);
    await waitUntil(() => connected(a, b), { what: 'both connected' });
    await waitUntil(() => {
      const sa = [...a.daemon.peerManager.sessions()];
      const sb = [...b.daemon.peerManager.sessions()];
      return sa.length === 1 && sb.length === 1 && sa[0]!.dialler === sb[0]!.dialler;
    }, { what: 'one session kept on both sides' });
    // When both dials complete, the lower id's is kept; when one side is up before the other dials, that one is.
    const kept = [...a.daemon.peerManager.sessions()][0]!;
    expect([a.id, b.id]).toContain(kept.dialler);
  });

  it('removing a peer closes its session at once and it cannot get back in; adding it back reconnects', async () => {
    const a = await testNode('a');
    const b = await testNode('b');
    await setPeers(b, [entryFor(a, { dial: false })]);
    await setPeers(a, [entryFor(b)]);
    await waitUntil(() => connected(a, b));
    await setPeers(b, []);
    await waitUntil(async () => (await peerState(a, b)) !== 'connected', { what: 'a sees the session closed' });
    await waitUntil(() => b.lines.some((l) => l.msg === 'peer refused' && l.code === 4004 && l.claimedId === a.id), { what: 'b refuses a as unknown' });
    expect(await peerState(a, b)).not.toBe('connected');
    await setPeers(b, [entryFor(a, { dial: false })]);
    await a.daemon.peerManager.redialNow(b.id as never);
    await waitUntil(() => connected(a, b), { what: 'reconnected after being listed again' });
  });

  it('a revoked entry closes the session with 4011 and shows revoked', async () => {
    const a = await testNode('a');
    const b = await testNode('b');
    await setPeers(b, [entryFor(a, { dial: false })]);
    await setPeers(a, [entryFor(b)]);
    await waitUntil(() => connected(a, b));
    await setPeers(b, [{ ...entryFor(a, { dial: false }), revoked: { at: new Date().toISOString(), cutoff: { '*': {} } } }]);
    await waitUntil(async () => (await peerState(b, a)) === 'revoked');
    await waitUntil(() => a.lines.some((l) => l.msg === 'session closed' && l.code === 4011), { what: 'a told it was revoked' });
  });

  it('sessions expire and re-authenticate with a short sessionTtl', async () => {
    const a = await testNode('a', { sessionTtl: '2s' });
    const b = await testNode('b', { sessionTtl: '2s' });
    await setPeers(b, [entryFor(a, { dial: false })]);
    await setPeers(a, [entryFor(b)]);
    await waitUntil(() => connected(a, b));
    await waitUntil(() => a.lines.filter((l) => l.msg === 'session established').length >= 3, { what: 'two re-authentications' });
    expect(a.lines.some((l) => l.msg === 'session closed' && l.code === 4014)).toBe(true);
    expect(await peerState(a, b)).toBe('connected');
  });
});
