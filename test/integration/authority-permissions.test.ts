import { describe, expect, it } from 'vitest';
import { entryFor, peerState, setPeers, status, testNode } from '../helpers/cluster.js';
import { getDoc } from '../helpers/docs.js';
import { waitUntil } from '../helpers/wait.js';
import { authority, closedWith, feedOf, grantFor, vectorOf, write, writeGrants } from '../helpers/authority.js';
import { thumbprint } from '../../src/identity/keys.js';
import { randomId } from '../helpers/junk.js';
import { mallory } from '../helpers/mallory.js';

/** A hub that trusts `admin` and nothing else, and a node it admits by grant alone. */
async function grantedPair(read: string[], write: string[]) {
  const admin = await authority();
  const hub = await testNode('hub');
  const fresh = await testNode('fresh');
  await setPeers(hub, [], [admin.entry]);
  await writeGrants(fresh, [await grantFor(admin, fresh, read, write)]);
  await setPeers(fresh, [entryFor(hub)]);
  await waitUntil(async () => (await peerState(fresh, hub)) === 'connected', { what: 'fresh admitted by the hub' });
  await waitUntil(async () => (await status(hub)).peers.some((p) => p.id === fresh.id && p.state === 'connected'), { what: 'hub lists fresh' });
  return { admin, hub, fresh };
}

describe('permissions come from the grant', () => {
  it('read: the hub never sends a granted node a document outside its grant\'s read, before or after it connected', async () => {
    const admin = await authority();
    const hub = await testNode('hub');
    const fresh = await testNode('fresh');
    await setPeers(hub, [], [admin.entry]);
    // Written before the session: only notes/** is announced.
    await write(hub, 'secret/early', (d) => d.getMap('m').set('k', 'early secret'));
    await write(hub, 'notes/early', (d) => d.getMap('m').set('k', 'early note'));
    await writeGrants(fresh, [await grantFor(admin, fresh, ['notes/**'], ['notes/**'])]);
    await setPeers(fresh, [entryFor(hub)]);
    await waitUntil(async () => (await getDoc(fresh, 'notes/early')).status === 200, { what: 'fresh has notes/early' });
    // Written during the session: only notes/** is pushed. The note after the secret is the barrier.
    await write(hub, 'secret/live', (d) => d.getMap('m').set('k', 'live secret'));
    await write(hub, 'notes2/live', (d) => d.getMap('m').set('k', 'not in the grant either'));
    await write(hub, 'notes/live', (d) => d.getMap('m').set('k', 'live note'));
    await waitUntil(async () => (await getDoc(fresh, 'notes/live')).status === 200, { what: 'fresh has notes/live' });
    for (const doc of ['secret/early', 'secret/live', 'notes2/live']) expect((await getDoc(fresh, doc)).status, doc).toBe(404);
    expect(fresh.daemon.docs.names()).toEqual(['notes/early', 'notes/live']);
  });

  it('write: the hub refuses a granted node\'s envelopes outside its grant\'s write; they never appear there', async () => {
    const { hub, fresh } = await grantedPair(['notes/**', 'shared/**'], ['notes/**']);
    // shared/x: the hub sends it (read), fresh may not author it (write).
    await write(hub, 'shared/x', (d) => d.getMap('m').set('hub', 1));
    await waitUntil(async () => (await getDoc(fresh, 'shared/x')).status === 200, { what: 'fresh reads shared/x' });
    await write(fresh, 'shared/x', (d) => d.getMap('m').set('fresh', 'not allowed'));
    await write(fresh, 'secret/y', (d) => d.getMap('m').set('fresh', 'not allowed'));
    await write(fresh, 'notes/ok', (d) => d.getMap('m').set('fresh', 'allowed'));
    await waitUntil(async () => (await getDoc(hub, 'notes/ok')).status === 200, { what: 'hub accepts the write within the grant' });
    await waitUntil(() => hub.lines.some((l) => l.msg === 'envelope refused' && l.doc === 'shared/x' && String(l.feed).startsWith(fresh.id)), { what: 'hub refuses fresh\'s shared/x envelope' });
    expect((await getDoc(hub, 'shared/x')).body).toEqual({ m: { hub: 1 } });
    expect(Object.keys(await vectorOf(hub, 'shared/x'))).toEqual([feedOf(hub)]);
    expect((await getDoc(hub, 'secret/y')).status).toBe(404);
    expect(hub.daemon.docs.has('secret/y' as never)).toBe(false);
    expect((await hub.daemon.verify()).ok).toBe(true);
    // Refusing is not a reason to cut the session.
    expect(await peerState(fresh, hub)).toBe('connected');
  });

  it('a refreshed grant that widens write brings in the feed refused before, without waiting for an announce', async () => {
    const { admin, hub, fresh } = await grantedPair(['**'], ['notes/**']);
    await write(fresh, 'shared/x', (d) => d.getMap('m').set('fresh', 'allowed later'));
    await waitUntil(() => hub.lines.some((l) => l.msg === 'envelope refused' && l.doc === 'shared/x' && String(l.feed).startsWith(fresh.id)), { what: 'hub refuses fresh\'s shared/x envelope' });
    expect((await getDoc(hub, 'shared/x')).status).toBe(404);
    // The test nodes announce every 5 minutes: only the new grant can bring the refused feed in now.
    await writeGrants(fresh, [await grantFor(admin, fresh, ['**'], ['**'])]);
    await waitUntil(async () => ((await getDoc(hub, 'shared/x')).body.m as { fresh?: string } | undefined)?.fresh === 'allowed later', { what: 'hub accepts the refused envelope under the new grant', timeoutMs: 10_000 });
    expect(await vectorOf(hub, 'shared/x')).toEqual(await vectorOf(fresh, 'shared/x'));
    expect(await peerState(fresh, hub)).toBe('connected');
  });

  it('a grant whose authority is removed stops vouching at once: nothing written after the change reaches the grant session while it is being closed', async () => {
    const admin = await authority();
    const hub = await testNode('hub');
    // Three thousand grants of other nodes from the same authority: sorting them again after the change takes a while.
    const m = await mallory(hub, [], [admin.entry]);
    const many = await Promise.all(Array.from({ length: 3000 }, () => {
      const publicKey = { kty: 'OKP', crv: 'Ed25519', x: randomId() } as const;
      return grantFor(admin, { id: thumbprint(publicKey), publicKey });
    }));
    for (let k = 0; k < many.length; k += 250) m.peer.send({ type: 'grants', grants: many.slice(k, k + 250), revocations: [] });
    await m.settle();
    const fresh = await testNode('fresh');
    await writeGrants(fresh, [await grantFor(admin, fresh)]);
    await setPeers(fresh, [entryFor(hub)]);
    await waitUntil(async () => (await status(hub)).peers.some((p) => p.id === fresh.id && p.state === 'connected'), { what: 'hub admits fresh by its grant' });
    await write(hub, 'notes/before', (d) => d.getMap('m').set('k', 1));
    await waitUntil(async () => (await getDoc(fresh, 'notes/before')).status === 200, { what: 'fresh reads notes/before' });

    await setPeers(hub, [{ name: 'mallory', id: m.pair.id, publicKey: m.pair.publicJwk, read: [], write: ['marker/**'] }], []);
    await write(hub, 'notes/after-removal', (d) => d.getMap('m').set('k', 'not for fresh'));
    await waitUntil(() => closedWith(hub, 4019, fresh.id), { what: 'the hub closed the grant session with 4019', timeoutMs: 20_000 });
    expect((await getDoc(fresh, 'notes/after-removal')).status).toBe(404);
  });

  it('a grant whose authority is removed from the hub\'s peers file stops admitting: the session closes and no later write gets in', async () => {
    const { hub, fresh } = await grantedPair(['**'], ['**']);
    await write(fresh, 'notes/a', (d) => d.getMap('m').set('before', 1));
    await waitUntil(async () => (await getDoc(hub, 'notes/a')).status === 200, { what: 'hub has the write made while admitted' });
    await setPeers(hub, [], []);
    await waitUntil(() => closedWith(fresh, 4019, hub.id) || closedWith(hub, 4019, fresh.id), { what: 'the grant session closed with 4019' });
    await waitUntil(async () => !(await status(hub)).peers.some((p) => p.id === fresh.id), { what: 'hub no longer lists fresh' });
    await write(fresh, 'notes/a', (d) => d.getMap('m').set('after', 2));
    // A reconnect attempt is refused (no authority left: unknown peer); wait for one, then look.
    fresh.daemon.peerManager.redialNow(hub.id as never);
    await waitUntil(() => fresh.lines.some((l) => l.msg === 'peer refused us; retrying much later'), { what: 'fresh refused on redial' });
    expect(await peerState(fresh, hub)).not.toBe('connected');
    expect((await getDoc(hub, 'notes/a')).body).toEqual({ m: { before: 1 } });
    // What it wrote while admitted stays valid.
    expect((await hub.daemon.verify()).ok).toBe(true);
  });
});
