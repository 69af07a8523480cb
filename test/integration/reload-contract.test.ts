/**
 * The contract, black-box: DESIGN.md §2 live reload of the peers and grants files
 * ("removed or re-keyed peers are disconnected at once"; "an invalid file is
 * logged with the exact problem and the last good one stays in force"),
 * checked on a real `tessera start` process and on in-process nodes.
 */
import { describe, expect, it } from 'vitest';
import { writeFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { linkPair, entryFor, peerState, setPeers, status, testNode } from '../helpers/cluster.js';
import { nodeDir, runCli, spawnNode, writePeers } from '../helpers/node.js';
import { generateKeyPair } from '../../src/identity/keys.js';
import { waitUntil } from '../helpers/wait.js';

async function token(dir: string): Promise<string> {
  return (await runCli(['token', '--data', dir, '--scope', 'read:**'])).stdout.trim();
}

describe('§2 an invalid peers or grants file on reload (real process)', () => {
  it('is logged naming the file and the JSON path; the last good peers stay in force', async () => {
    const { dir } = await nodeDir();
    const node = await spawnNode(dir);
    const b = await generateKeyPair();
    await writePeers(dir, { peers: [{ name: 'b', id: b.id, publicKey: b.publicJwk, read: ['x/**'] }] });
    await node.waitFor((l) => l.msg === 'peers file reloaded');

    // An invalid glob at $.peers[0].write[0], written by rename as an editor would.
    await writePeers(dir, { peers: [{ name: 'b', id: b.id, publicKey: b.publicJwk, read: ['x/**'], write: ['a**'] }] });
    const logged = await node.waitFor((l) => l.level === 50 && String(l.msg).includes('invalid config'));
    expect(logged).toMatchObject({ file: join(dir, 'peers.json'), path: '$.peers[0].write[0]' });
    const st = await fetch(`http://${node.api}/v1/status`, { headers: { authorization: `Bearer ${await token(dir)}` } });
    expect(((await st.json()) as { peers: { id: string }[] }).peers.map((p) => p.id)).toEqual([b.id]);

    // Grants file: an entry that is not a compact JWS.
    const tmp = join(dir, '.g.tmp');
    await writeFile(tmp, JSON.stringify({ grants: ['nope'], revocations: [] }));
    await rename(tmp, join(dir, 'grants.json'));
    const g = await node.waitFor((l) => l.level === 50 && l.file === join(dir, 'grants.json'));
    expect(g).toMatchObject({ path: '$.grants[0]' });

    // SIGHUP with the same invalid file: logged again, node still serves.
    node.child.kill('SIGHUP');
    expect((await fetch(`http://${node.api}/healthz`)).status).toBe(200);
    expect(await node.stop()).toBe(0);
  });
});

describe('§2 a re-keyed peer (same name, new key) is disconnected at once', () => {
  it('the session with the old key closes as soon as the new file is in force', async () => {
    const a = await testNode('a');
    const b = await testNode('b');
    await linkPair(a, b);

    const k2 = await generateKeyPair();
    const rekeyed = { ...entryFor(b), id: k2.id, publicKey: k2.publicJwk };
    const t0 = Date.now();
    await setPeers(a, [rekeyed]);
    await waitUntil(async () => (await peerState(b, a)) !== 'connected', { what: 'b sees the session with a closed', timeoutMs: 5000 });
    const elapsed = Date.now() - t0;
    const peers = (await status(a)).peers;
    expect(peers.map((p) => p.id)).toEqual([k2.id]);
    expect(peers[0]!.state).not.toBe('connected');
    expect(elapsed).toBeLessThan(3000);
    // It does not come back under the old key.
    await new Promise((r) => setTimeout(r, 1500));
    expect(await peerState(b, a)).not.toBe('connected');
  });
});
