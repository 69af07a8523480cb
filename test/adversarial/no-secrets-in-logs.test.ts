/**
 * Keys never appear in logs: after handshakes, refusals, bad and expired API tokens,
 * grants and revocations in and out, forged envelopes and a reload, no log
 * line carries a private key (`d`) or a token string.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { exportPrivateJwk } from '../../src/identity/keys.js';
import { readKeyFile } from '../../src/identity/file.js';
import { issueApiToken } from '../../src/tokens/api-token.js';
import { entryFor, peerState, setPeers, testNode } from '../helpers/cluster.js';
import { authority, grantFor, revocationOf, write, writeGrants } from '../helpers/authority.js';
import { envelope, newFeed, yUpdate } from '../helpers/raw-peer.js';
import { waitUntil } from '../helpers/wait.js';
import { junkJwt } from '../helpers/junk.js';
import { mallory } from '../helpers/mallory.js';

describe('logs', () => {
  it('never carry a private key or a token', async () => {
    const admin = await authority();
    const a = await testNode('a');
    const b = await testNode('b');
    const identity = await readKeyFile(join(a.dir, 'identity.json'));
    const secrets: string[] = [exportPrivateJwk(identity).d as string, exportPrivateJwk(admin).d as string];
    await setPeers(b, [entryFor(a, { dial: false })], [admin.entry]);
    const m = await mallory(a, [entryFor(b)], [admin.entry], { read: ['**'], write: ['**'] });
    await waitUntil(async () => (await peerState(a, b)) === 'connected', { what: 'a-b link' });

    const grant = await grantFor(admin, b);
    const revocation = await revocationOf(admin, { id: 'x'.repeat(43) });
    secrets.push(grant, revocation);
    await writeGrants(a, [grant], [revocation]);
    await write(a, 'd/1', (d) => d.getMap('m').set('k', 1));

    // API: a good token, an expired one, one with a bad signature.
    const good = await a.token();
    const expired = await issueApiToken(identity, { scopes: ['read:**'], ttlMs: 1000, now: Date.now() - 3_600_000 });
    const forged = `${good.slice(0, -4)}AAAA`;
    secrets.push(good, expired, forged);
    for (const t of [good, expired, forged]) await fetch(`${a.api}/v1/status`, { headers: { authorization: `Bearer ${t}` } });
    await fetch(`${a.api}/v1/docs/d%2F1/events?token=${forged}`);

    // Forged envelopes and junk tokens from the raw peer.
    const junk = junkJwt('tessera-grant+jwt', { iss: admin.id, sub: b.id, exp: 1 });
    secrets.push(junk);
    m.peer.send({ type: 'grants', grants: [junk], revocations: [junk] });
    const forgedEnv = envelope(m.pair, { doc: 'd/2', feed: newFeed(), seq: 1, update: yUpdate(5, (d) => d.getMap('m').set('k', 1)), key: admin });
    secrets.push(forgedEnv.token);
    m.peer.offer(forgedEnv);
    await m.settle();
    await setPeers(a, [entryFor(b)], [admin.entry]); // reload; mallory removed

    const text = JSON.stringify([...a.lines, ...b.lines]);
    // The check means something only if the nodes logged what happened (sessions, refusals, reloads).
    expect(a.lines.length).toBeGreaterThan(5);
    for (const s of secrets) expect(text.includes(s), s.slice(0, 20)).toBe(false);
    // Signature parts alone (a token's last 86 chars) are not there either.
    for (const s of secrets.filter((x) => x.split('.').length === 3)) expect(text.includes(s.split('.')[2]!)).toBe(false);
  });
});
