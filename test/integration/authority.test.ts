import { describe, expect, it } from 'vitest';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { entryFor, peerState, setPeers, status, testNode, type TestNode } from '../helpers/cluster.js';
import { appDoc, getDoc, postUpdate } from '../helpers/docs.js';
import { waitUntil } from '../helpers/wait.js';
import { generateKeyPair, type KeyPair } from '../../src/identity/keys.js';
import { issueGrant } from '../../src/tokens/grant.js';
import { issueRevocation } from '../../src/tokens/revocation.js';

async function authority(): Promise<KeyPair & { entry: Record<string, unknown> }> {
  const pair = await generateKeyPair();
  return Object.assign(pair, { entry: { name: 'admin', id: pair.id, publicKey: pair.publicJwk } });
}

async function grantFor(auth: KeyPair, node: TestNode, read: string[], write: string[], ttlMs = 3_600_000) {
  return issueGrant(auth, { id: node.id as never, publicKey: node.publicKey }, { read, write, ttlMs });
}

async function writeGrants(node: TestNode, grants: string[], revocations: string[] = []) {
  await writeFile(join(node.dir, 'grants.json'), JSON.stringify({ grants, revocations }));
  await node.daemon.reload();
}

describe('cluster authority', () => {
  it('a node admitted by grant alone connects, syncs and writes within its permissions', async () => {
    const admin = await authority();
    const hub = await testNode('hub');
    const fresh = await testNode('fresh');
    await setPeers(hub, [], [admin.entry]);
    await writeGrants(fresh, [await grantFor(admin, fresh, ['notes/**'], ['notes/**'])]);
    await setPeers(fresh, [entryFor(hub)]);
    await waitUntil(async () => (await peerState(fresh, hub)) === 'connected', { what: 'fresh connected to hub' });
    const s = await status(hub);
    expect(s.peers).toEqual([expect.objectContaining({ id: fresh.id, name: null, url: null, state: 'connected' })]);
    const app = appDoc();
    expect((await postUpdate(fresh, 'notes/a', app.edit((d) => d.getText('t').insert(0, 'granted')))).status).toBe(200);
    await waitUntil(async () => (await getDoc(hub, 'notes/a')).body.t === 'granted', { what: 'hub has the granted write' });
    const outside = appDoc();
    await postUpdate(fresh, 'secret/x', outside.edit((d) => d.getText('t').insert(0, 'nope')));
    await postUpdate(fresh, 'notes/b', appDoc().edit((d) => d.getText('t').insert(0, 'after')));
    await waitUntil(async () => (await getDoc(hub, 'notes/b')).body.t === 'after');
    expect((await getDoc(hub, 'secret/x')).status).toBe(404);
  });

  it('a node without a valid grant is closed with 4019', async () => {
    const admin = await authority();
    const other = await authority();
    const hub = await testNode('hub');
    const fresh = await testNode('fresh');
    await setPeers(hub, [], [admin.entry]);
    await writeGrants(fresh, [await grantFor(other, fresh, ['**'], ['**'])]);
    await setPeers(fresh, [entryFor(hub)]);
    await waitUntil(() => fresh.lines.some((l) => l.msg === 'peer refused us; retrying much later' && l.code === 4019), { what: 'fresh refused with 4019' });
    expect(await peerState(fresh, hub)).toBe('refused');
    expect(hub.lines.some((l) => l.msg === 'session established')).toBe(false);
    expect((await status(hub)).peers).toEqual([]);
  });

  it('a chain A-B-C with grants alone: C accepts what A wrote, vouched for by the grant that travels with it', async () => {
    const admin = await authority();
    const a = await testNode('a');
    const b = await testNode('b');
    const c = await testNode('c');
    for (const n of [a, b, c]) await writeGrants(n, [await grantFor(admin, n, ['**'], ['**'])]);
    await setPeers(b, [], [admin.entry]);
    await setPeers(a, [entryFor(b)], [admin.entry]);
    await setPeers(c, [entryFor(b)], [admin.entry]);
    await waitUntil(async () => (await peerState(a, b)) === 'connected' && (await peerState(c, b)) === 'connected');
    await postUpdate(a, 'chain', appDoc().edit((d) => d.getMap('m').set('from', 'a')));
    await waitUntil(async () => JSON.stringify((await getDoc(c, 'chain')).body.m) === '{"from":"a"}', { what: 'C has A\'s write' });
    expect((await c.daemon.verify()).ok).toBe(true);
  });

  it('an authority revocation spreads from one node, cuts the revoked node off and drops what it writes beyond the cutoff', async () => {
    const admin = await authority();
    const a = await testNode('a');
    const b = await testNode('b');
    const r = await testNode('r');
    for (const n of [a, b, r]) await writeGrants(n, [await grantFor(admin, n, ['**'], ['**'])]);
    await setPeers(a, [], [admin.entry]);
    await setPeers(b, [entryFor(a)], [admin.entry]);
    await setPeers(r, [entryFor(a)], [admin.entry]);
    await waitUntil(async () => (await peerState(b, a)) === 'connected' && (await peerState(r, a)) === 'connected');
    await postUpdate(r, 'd', appDoc().edit((d) => d.getMap('m').set('before', 1)));
    await waitUntil(async () => (await getDoc(b, 'd')).body.m !== undefined, { what: 'b has r\'s first write' });
    const rFeed = Object.keys((await postUpdate(r, 'd', new Uint8Array([0, 0]))).body.vector as object).find((k) => k.startsWith(r.id))!;
    const revocation = await issueRevocation(admin, r.id as never, { [(await import('../../src/trust/trust.js')).docHash('d')]: { [rFeed]: 1 } });
    await writeGrants(b, [await grantFor(admin, b, ['**'], ['**'])], [revocation]);
    await waitUntil(async () => (await peerState(r, a)) !== 'connected', { what: 'r cut off by a (revocation spread from b)' });
    await postUpdate(r, 'd', appDoc().edit((d) => d.getMap('m2').set('after', 2)));
    expect((await getDoc(a, 'd')).body).toEqual({ m: { before: 1 } });
    expect((await getDoc(b, 'd')).body).toEqual({ m: { before: 1 } });
  });
});
