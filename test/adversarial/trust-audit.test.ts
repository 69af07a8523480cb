/**
 * Audit of the authority layer against real daemons (DESIGN.md §2, §10): what
 * a listed peer, with no permission beyond a marker document, can make a
 * node believe or hold with grants and revocations it relays.
 *  - Respellings of one genuine token (jose takes whitespace, padding and
 *    stray bits in a signature) must not count as more tokens: neither fill
 *    the room for revocations, so that the next genuine one (of that very
 *    peer) is refused, nor push an origin's other genuine grants out.
 *  - Grants nobody can verify are bounded in bytes, not only in number.
 *  - An authority removed from the peers file stops vouching at the next
 *    message, not once every held token has been sorted again.
 */
import { describe, expect, it } from 'vitest';
import { thumbprint, generateKeyPair } from '../../src/identity/keys.js';
import { Space } from '../../src/store/store.js';
import { MAX_GRANTS_PER_SUBJECT, MAX_UNVERIFIED_GRANT_CHARS } from '../../src/trust/grant-pool.js';
import { MAX_TRUSTED_REVOCATIONS } from '../../src/trust/revocation-pool.js';
import { Close } from '../../src/protocol/close-codes.js';
import type { NodeId } from '../../src/types.js';
import { entryFor, peerState, setPeers, testNode, type TestNode } from '../helpers/cluster.js';
import { authority, grantFor, revocationOf, vectorOf, writeGrants } from '../helpers/authority.js';
import { b64, junkGrant, randomId } from '../helpers/junk.js';
import { mallory } from '../helpers/mallory.js';
import { withStore } from '../helpers/node.js';
import { envelope, newFeed, rawEntry, yUpdate } from '../helpers/raw-peer.js';
import { waitUntil } from '../helpers/wait.js';

const connected = async (a: TestNode, b: TestNode) => (await peerState(a, b)) === 'connected';

/** The `n`-th of many spellings of `token`'s signature (never the token itself): spaces inserted after the characters that the bits of n + 1 name. */
function respell(token: string, n: number): string {
  const [h, p, s] = token.split('.') as [string, string, string];
  const bits = n + 1;
  let sig = '';
  for (let i = 0; i < s.length; i++) sig += s[i] + (i < 30 && bits & (1 << i) ? ' ' : '');
  return `${h}.${p}.${sig}`;
}

describe('respellings of one genuine token', () => {
  it('a revocation in 10 000 spellings is held once, and does not keep the next genuine one (of the peer that sent them) from binding', async () => {
    const admin = await authority();
    const a = await testNode('a');
    const b = await testNode('b');
    await setPeers(b, [entryFor(a, { dial: false })], [admin.entry]);
    const m = await mallory(a, [entryFor(b)], [admin.entry]);
    await waitUntil(() => connected(a, b), { what: 'a-b link' });

    // Revocations spread to every node: any peer can hold a genuine one.
    const genuine = await revocationOf(admin, { id: randomId() });
    m.peer.send({ type: 'grants', grants: [], revocations: [genuine] });
    for (let k = 0; k < MAX_TRUSTED_REVOCATIONS; k += 250) {
      m.peer.send({ type: 'grants', grants: [], revocations: Array.from({ length: 250 }, (_, i) => respell(genuine, k + i)) });
    }
    await m.settle();

    // The admin revokes mallory on b; the revocation reaches a over the a-b session.
    await writeGrants(b, [], [await revocationOf(admin, { id: m.pair.id })]);
    const closed = await waitUntil(() => m.peer.closedWith, { what: 'mallory closed by a', timeoutMs: 30_000 });
    expect(closed.code).toBe(Close.peerRevoked.code);
    expect(a.daemon.trust.rawRevocations().filter((r) => r !== genuine && r.startsWith(genuine.slice(0, 200)))).toEqual([]);
  }, 180_000);

  it('a grant in 8 spellings does not push its subject\'s other genuine grant out: what that one vouches for is still accepted', async () => {
    const admin = await authority();
    const hub = await testNode('hub');
    const g = await generateKeyPair();
    const m = await mallory(hub, [], [admin.entry], { read: [], write: ['g/**'] });
    // Grants travel with their subject's envelopes: a relay holds them all.
    const older = await grantFor(admin, { id: g.id, publicKey: g.publicJwk }, ['**'], ['g/old/**'], 3_600_000);
    const newer = await grantFor(admin, { id: g.id, publicKey: g.publicJwk }, ['**'], ['g/new/**'], 7_200_000);
    m.peer.send({ type: 'grants', grants: [older, newer], revocations: [] });
    m.peer.send({ type: 'grants', grants: Array.from({ length: MAX_GRANTS_PER_SUBJECT }, (_, i) => respell(newer, i)), revocations: [] });
    const feed = newFeed();
    m.peer.offer(envelope(g, { doc: 'g/old/doc', feed, seq: 1, update: yUpdate(4242, (d) => d.getMap('m').set('k', 'by g')) }));
    await m.settle();

    expect((await vectorOf(hub, 'g/old/doc'))[`${g.id}:${feed}`]).toBe(1);
    expect(new Set(hub.daemon.trust.rawGrantsFor(g.id as NodeId))).toEqual(new Set([older, newer]));
  });
});

/** An unsigned grant for `sub` padded to nearly the 16 KiB a token may have. */
function bigJunkGrant(sub: string): string {
  const junk = junkGrant(sub);
  const [h, , s] = junk.split('.') as [string, string, string];
  const claims = { iss: randomId(), sub, iat: 1, exp: 9_999_999_999, jti: randomId(), cnf: { jwk: { kty: 'OKP', crv: 'Ed25519', x: randomId() } }, read: ['**'], write: ['**'], pad: 'x'.repeat(11_500) };
  return `${h}.${b64(claims)}.${s}`;
}

describe('grants nobody here can verify', () => {
  it('48 MiB of them for made-up subjects: what the node holds and stores stays within its budget, and a grant its subject presents still finds room', async () => {
    const hub = await testNode('hub');
    const m = await mallory(hub, []);
    for (let k = 0; k < 12; k++) m.peer.send({ type: 'grants', grants: Array.from({ length: 256 }, () => bigJunkGrant(randomId())), revocations: [] });
    const own = junkGrant(m.pair.id);
    m.peer.send({ type: 'grants', grants: [own], revocations: [] });
    await m.settle();
    expect(hub.daemon.trust.rawGrantsFor(m.pair.id)).toContain(own);

    await hub.daemon.stop();
    const stored = await withStore(hub.dir, async (store) => {
      let chars = 0;
      for await (const [, value] of store.entries(Space.grant)) chars += value.byteLength;
      return chars;
    });
    expect(stored).toBeGreaterThan(0);
    expect(stored).toBeLessThanOrEqual(MAX_UNVERIFIED_GRANT_CHARS + own.length);
  }, 120_000);
});

describe('an authority removed from the peers file', () => {
  it('stops vouching for its grantees at the next message, even while the node is still sorting thousands of its grants again', async () => {
    const admin = await authority();
    const hub = await testNode('hub');
    const g = await generateKeyPair();
    const perms = { read: [], write: ['g/**'] };
    const m = await mallory(hub, [], [admin.entry], perms);
    // Thousands of genuine grants held (a large cluster): sorting them again after a change takes a while.
    const many = await Promise.all(
      Array.from({ length: 3000 }, () => {
        const publicKey = { kty: 'OKP', crv: 'Ed25519', x: randomId() } as const;
        return grantFor(admin, { id: thumbprint(publicKey), publicKey });
      }),
    );
    for (let k = 0; k < many.length; k += 250) m.peer.send({ type: 'grants', grants: many.slice(k, k + 250), revocations: [] });
    m.peer.send({ type: 'grants', grants: [await grantFor(admin, { id: g.id, publicKey: g.publicJwk }, ['**'], ['g/**'])], revocations: [] });
    const feed = newFeed();
    const write = (doc: string) => m.peer.offer(envelope(g, { doc, feed, seq: 1, update: yUpdate(4343, (d) => d.getMap(doc).set('k', 'by g')) }));
    write('g/before');
    await m.settle();
    expect((await vectorOf(hub, 'g/before'))[`${g.id}:${feed}`]).toBe(1);

    // The same peers file without the authority (mallory's entry unchanged, so her session stays).
    await setPeers(hub, [rawEntry('mallory', m.pair, { read: perms.read, write: [...perms.write, 'marker/**'] })], []);
    write('g/after');
    await m.settle();
    expect(await vectorOf(hub, 'g/after')).toEqual({});
  }, 120_000);
});
