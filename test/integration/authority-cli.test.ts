import { stat, writeFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { entryFor, peerState, setPeers, testNode } from '../helpers/cluster.js';
import { nodeDir, runCli, spawnNode, tempDir, writePeers, type SpawnedNode } from '../helpers/node.js';
import { waitUntil } from '../helpers/wait.js';
import { feedOf, hashCutoff, nodeOn, write, writeGrants } from '../helpers/authority.js';
import { readKeyFile } from '../../src/identity/file.js';
import { importPublicJwk } from '../../src/identity/keys.js';
import { issueApiToken } from '../../src/tokens/api-token.js';
import { verifyGrant } from '../../src/tokens/grant.js';
import { verifyRevocation } from '../../src/tokens/revocation.js';
import type { NodeId, PublicJwk } from '../../src/types.js';

async function cli(args: string[]): Promise<string> {
  const res = await runCli(args);
  if (res.code !== 0) throw new Error(`tessera ${args.join(' ')}: exit ${res.code}: ${res.stderr}`);
  return res.stdout.trim();
}

/** GETs a path of a spawned node's API with a token signed by its identity. */
async function apiGet(node: SpawnedNode, dir: string, path: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const token = await issueApiToken(await readKeyFile(join(dir, 'identity.json')), { scopes: ['read:**', 'write:**'], ttlMs: 600_000 });
  const res = await fetch(`http://${node.api}${path}`, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** `tessera authority init` into a temp folder: the key file and the printed authorities entry. */
async function authorityInit(work: string) {
  const keyFile = join(work, 'admin.key');
  const entry = JSON.parse(await cli(['authority', 'init', '--out', keyFile, '--name', 'admin'])) as { name: string; id: string; publicKey: PublicJwk };
  return { keyFile, entry, verifier: { id: entry.id as NodeId, key: importPublicJwk(entry.publicKey) } };
}

describe('the authority commands through the real CLI', () => {
  it('authority init and grant produce an authority and a grant that a running `tessera start` admits by', async () => {
    const work = await tempDir();
    const { keyFile, entry: authEntry, verifier } = await authorityInit(work);
    expect(authEntry).toEqual({ name: 'admin', id: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/), publicKey: { kty: 'OKP', crv: 'Ed25519', x: expect.any(String) } });
    expect((await stat(keyFile)).mode & 0o777).toBe(0o600);

    const n = await nodeDir({ name: 'n' });
    await writePeers(n.dir, { peers: [], authorities: [authEntry] });
    const node = await spawnNode(n.dir);
    const nEntry = JSON.parse(await cli(['id', '--json', '--data', n.dir])) as Record<string, unknown>;

    const f = await nodeDir({ name: 'f' });
    const fIdFile = join(work, 'f.json');
    await writeFile(fIdFile, await cli(['id', '--json', '--data', f.dir]));
    const grant = await cli(['grant', '--authority', keyFile, '--node', fIdFile, '--read', 'notes/**', '--write', 'notes/**', '--ttl', '1h']);
    const verified = await verifyGrant(grant, verifier, { sub: f.id as NodeId, now: Date.now(), checkExpiry: true });
    expect(verified).toMatchObject({ read: ['notes/**'], write: ['notes/**'] });
    await writeFile(join(f.dir, 'grants.json'), JSON.stringify({ grants: [grant] }));
    await writePeers(f.dir, { peers: [{ ...nEntry, url: `ws://${node.peer}`, read: ['**'], write: ['**'] }], authorities: [] });
    const fresh = await nodeOn(f.dir, 'f');
    await waitUntil(() => node.lines.some((l) => l.msg === 'session established' && l.peer === f.id), { what: 'n admits f by its grant' });
    await write(fresh, 'notes/f', (d) => d.getMap('m').set('from', 'f'));
    await waitUntil(async () => (await apiGet(node, n.dir, '/v1/docs/notes%2Ff')).status === 200, { what: 'n accepts f\'s write' });
    expect((await apiGet(node, n.dir, '/v1/docs/notes%2Ff')).body).toEqual({ m: { from: 'f' } });
    expect(await peerState(fresh, { id: n.id } as never)).toBe('connected');
    const statusN = JSON.parse(await cli(['status', '--data', n.dir, '--json'])) as { peers: { id: string; name: string | null; state: string }[] };
    expect(statusN.peers).toContainEqual(expect.objectContaining({ id: f.id, name: null, state: 'connected' }));
  });

  it('peers revoke NAME writes the revoked entry with the cutoff of what the node holds and prints it; revoke --cutoff accepts it', async () => {
    const work = await tempDir();
    const { keyFile, entry: authEntry, verifier } = await authorityInit(work);
    const r = await testNode('r');
    const n = await nodeDir({ name: 'n' });
    await writePeers(n.dir, { peers: [entryFor(r, { dial: false })], authorities: [] });
    const node = await spawnNode(n.dir);
    const nEntry = JSON.parse(await cli(['id', '--json', '--data', n.dir])) as Record<string, unknown>;
    const nPinned = { ...nEntry, url: `ws://${node.peer}`, read: ['**'], write: ['**'] };
    await setPeers(r, [nPinned]);
    await waitUntil(() => node.lines.some((l) => l.msg === 'session established' && l.peer === r.id), { what: 'r connected to n' });
    await write(r, 'notes/a', (d) => d.getMap('m').set('a1', 1));
    await write(r, 'notes/a', (d) => d.getMap('m').set('a2', 2));
    await write(r, 'notes/b', (d) => d.getMap('m').set('b1', 1));
    const rFeed = feedOf(r);
    await waitUntil(async () => {
      const docs = (await apiGet(node, n.dir, '/v1/docs')).body.docs as { name: string; vector: Record<string, number> }[];
      return docs.find((d) => d.name === 'notes/a')?.vector[rFeed] === 2 && docs.find((d) => d.name === 'notes/b')?.vector[rFeed] === 1;
    }, { what: 'n holds r\'s envelopes' });

    const printed = await cli(['peers', 'revoke', 'r', '--data', n.dir]);
    const cutoff = JSON.parse(printed) as Record<string, Record<string, number>>;
    expect(cutoff).toEqual(hashCutoff({ 'notes/a': { [rFeed]: 2 }, 'notes/b': { [rFeed]: 1 } }));
    const peersFile = JSON.parse(await readFile(join(n.dir, 'peers.json'), 'utf8')) as { peers: Record<string, unknown>[] };
    expect(peersFile.peers.find((p) => p.id === r.id)).toMatchObject({ name: 'r', revoked: { at: expect.any(String), cutoff } });
    // The running node picked the file up: r is cut off, shown as revoked.
    await waitUntil(() => r.lines.some((l) => l.msg === 'session closed' && l.code === 4011), { what: 'n closed r\'s session as revoked' });
    const status = await apiGet(node, n.dir, '/v1/status');
    expect((status.body.peers as { id: string; state: string }[]).find((p) => p.id === r.id)?.state).toBe('revoked');

    const cutoffFile = join(work, 'cutoff.json');
    await writeFile(cutoffFile, printed);
    const revocation = await cli(['revoke', '--authority', keyFile, '--node', r.id, '--cutoff', cutoffFile]);
    expect(await verifyRevocation(revocation, verifier)).toMatchObject({ sub: r.id, cutoff });
    const whole = await cli(['revoke', '--authority', keyFile, '--node', r.id]);
    expect((await verifyRevocation(whole, verifier)).cutoff).toEqual({ '*': {} });
    // A daemon that trusts the authority enforces it: r is refused there.
    const m = await testNode('m');
    await setPeers(m, [entryFor(r, { dial: false })], [authEntry]);
    await writeGrants(m, [], [revocation]);
    await setPeers(r, [nPinned, entryFor(m)]);
    await waitUntil(() => r.lines.some((l) => l.msg === 'peer refused us; retrying much later' && l.peer === m.id && String(l.err).includes('revoked')), { what: 'm refuses r as revoked' });
  });
});
