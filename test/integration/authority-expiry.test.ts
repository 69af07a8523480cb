import { describe, expect, it } from 'vitest';
import { entryFor, peerState, setPeers, status, testNode } from '../helpers/cluster.js';
import { getDoc } from '../helpers/docs.js';
import { waitUntil } from '../helpers/wait.js';
import { authority, closedWith, feedOf, grantFor, vectorOf, write, writeGrants } from '../helpers/authority.js';
import { peekGrant } from '../../src/tokens/grant.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Writes one array item per round to `doc` on `node` until stopped; resolves with how many were acknowledged. */
function writeContinuously(node: Parameters<typeof write>[0], doc: string) {
  let stop = false;
  let n = 0;
  const done = (async () => {
    while (!stop) {
      const i = n;
      await write(node, doc, (d) => d.getArray('log').push([i]));
      n++;
      await sleep(20);
    }
    return n;
  })();
  return { get count() { return n; }, stop: () => ((stop = true), done) };
}

describe('grant expiry and refresh', () => {
  it('a refreshed grant dropped into the grants file before expiry keeps the session alive; no write is lost', async () => {
    const admin = await authority();
    const hub = await testNode('hub');
    const fresh = await testNode('fresh');
    await setPeers(hub, [], [admin.entry]);
    const short = await grantFor(admin, fresh, ['**'], ['**'], 8_000);
    const expiresAt = peekGrant(short)!.exp * 1000;
    await writeGrants(fresh, [short]);
    await setPeers(fresh, [entryFor(hub)]);
    await waitUntil(async () => (await peerState(fresh, hub)) === 'connected', { what: 'fresh admitted' });
    const session = hub.daemon.peerManager.session(fresh.id as never);
    expect(session?.grant?.exp).toBe(expiresAt / 1000);

    const writer = writeContinuously(fresh, 'log');
    await waitUntil(async () => ((await getDoc(hub, 'log')).body.log as unknown[] | undefined)?.length! >= 5, { what: 'the first writes on the hub' });
    const refreshed = await grantFor(admin, fresh, ['**'], ['**'], 3_600_000);
    await writeGrants(fresh, [refreshed]);
    const picked = await waitUntil(() => hub.lines.find((l) => l.msg === 'peer refreshed its grant' && l.peer === fresh.id), { what: 'the hub takes the refreshed grant in the session' });
    expect(Number(picked.time), 'the refresh must land before the short grant expires (machine too slow?)').toBeLessThan(expiresAt);
    expect((await status(fresh)).grant).toEqual({ expiresAt: new Date(peekGrant(refreshed)!.exp * 1000).toISOString() });

    // Keep writing well past the original expiry.
    await waitUntil(() => Date.now() > expiresAt + 1_500, { what: 'the original expiry to pass', timeoutMs: 30_000 });
    const written = await writer.stop();
    await waitUntil(async () => ((await getDoc(hub, 'log')).body.log as unknown[]).length === written, { what: `all ${written} writes on the hub` });
    expect(written).toBeGreaterThan(5);
    expect(await vectorOf(hub, 'log')).toEqual(await vectorOf(fresh, 'log'));
    // Same session throughout: no 4019, no reconnect.
    expect(closedWith(fresh, 4019)).toBe(false);
    expect(hub.lines.some((l) => l.code === 4019)).toBe(false);
    expect(hub.daemon.peerManager.session(fresh.id as never)).toBe(session);
    expect(session!.closed).toBe(false);
    expect(hub.lines.filter((l) => l.msg === 'session established').length).toBe(1);
  });

  it('an expired grant without refresh closes the session with 4019; what the node wrote stays valid on the hub and beyond', async () => {
    const admin = await authority();
    const hub = await testNode('hub');
    const fresh = await testNode('fresh');
    await setPeers(hub, [], [admin.entry]);
    const short = await grantFor(admin, fresh, ['**'], ['**'], 4_000);
    await writeGrants(fresh, [short]);
    await setPeers(fresh, [entryFor(hub)]);
    await waitUntil(async () => (await peerState(fresh, hub)) === 'connected', { what: 'fresh admitted' });
    for (let i = 0; i < 3; i++) await write(fresh, 'notes/a', (d) => d.getMap('m').set(`k${i}`, i));
    await waitUntil(async () => (await vectorOf(hub, 'notes/a'))[feedOf(fresh)] === 3, { what: 'the hub holds the three writes' });

    await waitUntil(() => closedWith(fresh, 4019, hub.id), { what: 'session closed with 4019 at expiry', timeoutMs: 20_000 });
    expect(hub.lines.some((l) => l.msg === 'session closed' && l.peer === fresh.id && l.code === 4019)).toBe(true);
    await waitUntil(async () => !(await status(hub)).peers.some((p) => p.id === fresh.id && p.state === 'connected'), { what: 'hub no longer lists fresh' });

    // Authorship outlives admission: the envelopes still verify, the content is there.
    expect((await getDoc(hub, 'notes/a')).body).toEqual({ m: { k0: 0, k1: 1, k2: 2 } });
    const report = await hub.daemon.verify();
    expect(report).toMatchObject({ ok: true, problems: [] });
    expect(report.envelopes).toBeGreaterThanOrEqual(3);
    // ... and a node that joins later accepts them, vouched for by the (expired) grant that travels with them.
    const late = await testNode('late');
    await setPeers(hub, [entryFor(late, { dial: false })], [admin.entry]);
    await setPeers(late, [entryFor(hub)], [admin.entry]);
    await waitUntil(async () => (await getDoc(late, 'notes/a')).status === 200 && (await vectorOf(late, 'notes/a'))[feedOf(fresh)] === 3, { what: 'the late node accepts what fresh wrote' });
    expect((await getDoc(late, 'notes/a')).body).toEqual({ m: { k0: 0, k1: 1, k2: 2 } });
    expect((await late.daemon.verify()).ok).toBe(true);
  });

  it('an expired grant admits nothing: a redial after expiry is not admitted at all', async () => {
    const admin = await authority();
    const hub = await testNode('hub');
    const fresh = await testNode('fresh');
    await setPeers(hub, [], [admin.entry]);
    await writeGrants(fresh, [await grantFor(admin, fresh, ['**'], ['**'], 3_000)]);
    await setPeers(fresh, [entryFor(hub)]);
    await waitUntil(async () => (await peerState(fresh, hub)) === 'connected', { what: 'fresh admitted' });
    await waitUntil(() => closedWith(fresh, 4019, hub.id), { what: 'session closed with 4019 at expiry', timeoutMs: 20_000 });
    const closes = () => fresh.lines.filter((l) => (l.msg === 'session closed' && l.code === 4019) || l.msg === 'peer refused us; retrying much later' || l.msg === 'dial failed; retrying').length;
    const before = closes();
    fresh.daemon.peerManager.redialNow(hub.id as never);
    await waitUntil(() => closes() > before, { what: 'the outcome of a redial with the expired grant' });
    expect(hub.lines.filter((l) => l.msg === 'session established' && l.peer === fresh.id).length, 'sessions the hub established for fresh').toBe(1);
  });
});
