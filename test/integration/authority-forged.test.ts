import { describe, expect, it } from 'vitest';
import { SignJWT } from 'jose';
import { randomBytes } from 'node:crypto';
import { entryFor, peerState, setPeers, status, testNode, type TestNode } from '../helpers/cluster.js';
import { waitUntil } from '../helpers/wait.js';
import { authority, closedWith, dialWithGrants, grantFor, unsecuredJwt, writeGrants, type Authority } from '../helpers/authority.js';
import { generateKeyPair } from '../../src/identity/keys.js';

/** A hub that trusts `admin` and lists no peer: anyone it admits, it admits by grant. */
async function hubTrusting(admin: Authority): Promise<TestNode> {
  const hub = await testNode('hub');
  await setPeers(hub, [], [admin.entry]);
  return hub;
}

/** `fresh` presents `grant` (from its grants file); the hub must close it with 4019 and never admit it. */
async function expectRefused(hub: TestNode, fresh: TestNode, grant: string): Promise<void> {
  await writeGrants(fresh, [grant]);
  await setPeers(fresh, [entryFor(hub)]);
  await waitUntil(() => closedWith(fresh, 4019, hub.id), { what: 'fresh closed with 4019' });
  await waitUntil(() => hub.lines.some((l) => l.msg === 'peer left during the handshake' && l.code === 4019 && l.claimedId === fresh.id), { what: 'hub logs the refusal with the claimed id' });
  expect(hub.lines.some((l) => l.msg === 'session established')).toBe(false);
  expect((await status(hub)).peers).toEqual([]);
  expect(hub.daemon.peerManager.session(fresh.id as never)).toBeUndefined();
}

const claims = (admin: Authority, node: { id: string; publicKey: { x: string } }, extra: Record<string, unknown> = {}) => ({
  iss: admin.id,
  sub: node.id,
  cnf: { jwk: { kty: 'OKP', crv: 'Ed25519', x: node.publicKey.x } },
  read: ['**'],
  write: ['**'],
  iat: Math.floor(Date.now() / 1000),
  exp: Math.floor(Date.now() / 1000) + 3600,
  jti: randomBytes(12).toString('base64url'),
  ...extra,
});

describe('forged grants are refused with 4019 and never admit', () => {
  it('signed by an untrusted key that claims the trusted authority as issuer', async () => {
    const admin = await authority();
    const forger = await authority('forger');
    const hub = await hubTrusting(admin);
    const fresh = await testNode('fresh');
    const token = await new SignJWT(claims(admin, fresh)).setProtectedHeader({ alg: 'EdDSA', typ: 'tessera-grant+jwt' }).sign(forger.privateKey);
    await expectRefused(hub, fresh, token);
  });

  it('the right authority, but cnf is another node\'s key', async () => {
    const admin = await authority();
    const hub = await hubTrusting(admin);
    const fresh = await testNode('fresh');
    const other = await generateKeyPair();
    // sub = fresh, but the key it binds is someone else's: the handshake key does not match it.
    const token = await grantFor(admin, { id: fresh.id, publicKey: other.publicJwk });
    await expectRefused(hub, fresh, token);
  });

  it('a grant naming another node but bound (cnf) to the presenter\'s key, over a raw handshake', async () => {
    const admin = await authority();
    const hub = await hubTrusting(admin);
    const victim = await generateKeyPair();
    const thief = await generateKeyPair();
    // A grant naming the victim, with cnf = the thief's key: presented over the thief's own handshake.
    const token = await grantFor(admin, { id: victim.id, publicKey: thief.publicJwk });
    const dial = await dialWithGrants(hub.url, thief, { id: hub.id, publicKey: hub.publicKey }, [token]);
    expect((await dial.closed).code).toBe(4019);
    expect(dial.received.filter((m) => m.type !== 'grants')).toEqual([]);
    expect((await status(hub)).peers).toEqual([]);
  });

  it('alg: none, built by hand, presented in the first encrypted frame', async () => {
    const admin = await authority();
    const hub = await hubTrusting(admin);
    const self = await generateKeyPair();
    const token = unsecuredJwt({ alg: 'none', typ: 'tessera-grant+jwt' }, claims(admin, { id: self.id, publicKey: self.publicJwk }));
    const dial = await dialWithGrants(hub.url, self, { id: hub.id, publicKey: hub.publicKey }, [token]);
    const closed = await dial.closed;
    expect(closed.code).toBe(4019);
    expect(closed.reason).toMatch(/^grant_required/);
    // Nothing reached the caller beyond (at most) the hub's own grants message: no announce, no document.
    expect(dial.errors).toEqual([]);
    expect(dial.received.filter((m) => m.type !== 'grants')).toEqual([]);
    expect(hub.lines.some((l) => l.msg === 'session established')).toBe(false);
    expect((await status(hub)).peers).toEqual([]);
  });

  it('alg: none with a junk signature in the grants file of a real node', async () => {
    const admin = await authority();
    const hub = await hubTrusting(admin);
    const fresh = await testNode('fresh');
    const token = unsecuredJwt({ alg: 'none', typ: 'tessera-grant+jwt' }, claims(admin, fresh)) + 'AAAA';
    await expectRefused(hub, fresh, token);
  });

  it('expired', async () => {
    const admin = await authority();
    const hub = await hubTrusting(admin);
    const fresh = await testNode('fresh');
    const token = await grantFor(admin, fresh, ['**'], ['**'], 3_600_000, Date.now() - 2 * 3_600_000);
    await expectRefused(hub, fresh, token);
  });

  it('sub mismatch: a valid grant of another node', async () => {
    const admin = await authority();
    const hub = await hubTrusting(admin);
    const fresh = await testNode('fresh');
    const other = await testNode('other');
    await expectRefused(hub, fresh, await grantFor(admin, other));
  });

  it('sub mismatch: sub names another node, cnf is the presenter\'s own key', async () => {
    const admin = await authority();
    const hub = await hubTrusting(admin);
    const fresh = await testNode('fresh');
    const other = await generateKeyPair();
    const token = await new SignJWT(claims(admin, fresh, { sub: other.id })).setProtectedHeader({ alg: 'EdDSA', typ: 'tessera-grant+jwt' }).sign(admin.privateKey);
    await expectRefused(hub, fresh, token);
  });

  it('a node refused with 4019 backs off like any refusal that only a config change can fix (state "refused")', async () => {
    const admin = await authority();
    const forger = await authority('forger');
    const hub = await hubTrusting(admin);
    const fresh = await testNode('fresh');
    await writeGrants(fresh, [await grantFor(forger, fresh)]);
    await setPeers(fresh, [entryFor(hub)]);
    await waitUntil(() => closedWith(fresh, 4019, hub.id), { what: 'fresh closed with 4019' });
    await waitUntil(async () => (await peerState(fresh, hub)) === 'refused', { what: 'fresh shows the hub as refused', timeoutMs: 10_000 });
  });
});
