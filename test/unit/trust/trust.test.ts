/**
 * What a node keeps of the grants and revocations peers push at it (DESIGN.md
 * §10): those that verify against a trusted authority are never displaced or
 * blocked by those it cannot verify, which are kept within small caps; and
 * whatever it sends is split into messages a receiver accepts.
 */
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import type { PeersConfig } from '../../../src/config/peers.js';
import { generateKeyPair, type KeyPair } from '../../../src/identity/keys.js';
import { decodeMessage, encodeMessage, grantsMessages, MAX_GRANT_ITEMS } from '../../../src/protocol/messages.js';
import { Space, Store } from '../../../src/store/store.js';
import { issueGrant } from '../../../src/tokens/grant.js';
import { issueRevocation } from '../../../src/tokens/revocation.js';
import { MAX_GRANTS_PER_SUBJECT, MAX_UNVERIFIED_SUBJECTS } from '../../../src/trust/grant-pool.js';
import { MAX_UNVERIFIED_REVOCATIONS } from '../../../src/trust/revocation-pool.js';
import { Trust } from '../../../src/trust/trust.js';
import type { NodeId } from '../../../src/types.js';
import { junkGrant, junkRevocation, randomId } from '../../helpers/junk.js';
import { memoryLogger, tempDir } from '../../helpers/node.js';

interface Fixture {
  store: Store;
  path: string;
  config: { current: PeersConfig };
  trust: Trust;
}

async function openStore(path: string): Promise<Store> {
  const store = await Store.open(path, { durability: 'relaxed', log: memoryLogger().log });
  onTestFinished(() => store.close());
  return store;
}

/** A Trust on a fresh store (or `path`), trusting `authorities`. */
async function fixture(authorities: KeyPair[] = [], path?: string): Promise<Fixture> {
  const p = path ?? join(await tempDir(), 'db');
  const store = await openStore(p);
  const config = { current: { peers: [], authorities: authorities.map((a) => ({ id: a.id, publicKey: a.publicJwk })) } as PeersConfig };
  const trust = new Trust({ store, peers: () => config.current, log: memoryLogger().log, now: Date.now });
  await trust.start();
  return { store, path: p, config, trust };
}

async function count(store: Store, space: Space): Promise<number> {
  let n = 0;
  for await (const _ of store.entries(space)) n++;
  return n;
}

const grantOf = (auth: KeyPair, node: KeyPair, ttlMs = 3_600_000) => issueGrant(auth, { id: node.id, publicKey: node.publicJwk }, { read: ['**'], write: ['**'], ttlMs });
const junkRevocations = (n: number) => Array.from({ length: n }, () => junkRevocation());

describe('grants messages a node sends', () => {
  it('are split so that no list passes 256 entries, in order, nothing lost', () => {
    const grants = Array.from({ length: 300 }, (_, i) => `g${i}`);
    const revocations = Array.from({ length: 600 }, (_, i) => `r${i}`);
    const messages = grantsMessages(grants, revocations);
    for (const m of messages) {
      expect(m.grants.length).toBeLessThanOrEqual(MAX_GRANT_ITEMS);
      expect(m.revocations.length).toBeLessThanOrEqual(MAX_GRANT_ITEMS);
      expect(decodeMessage(encodeMessage(m))).toEqual(m);
    }
    expect(messages.flatMap((m) => m.grants)).toEqual(grants);
    expect(messages.flatMap((m) => m.revocations)).toEqual(revocations);
    // What comes first goes in the first message (the session's first frame).
    expect(messages[0]!.grants).toEqual(grants.slice(0, MAX_GRANT_ITEMS));
  });

  it('stay within about 256 KiB each, and leave out a token no receiver accepts', () => {
    const big = Array.from({ length: 40 }, (_, i) => String(i % 10).repeat(16 * 1024));
    const messages = grantsMessages([], [...big, 'x'.repeat(16 * 1024 + 1)]);
    for (const m of messages) expect(m.revocations.join('').length).toBeLessThanOrEqual(256 * 1024);
    expect(messages.flatMap((m) => m.revocations)).toEqual(big);
  });

  it('are one empty message when there is nothing to send', () => {
    expect(grantsMessages([], [])).toEqual([{ type: 'grants', grants: [], revocations: [] }]);
  });
});

describe('revocations a node keeps', () => {
  it('of those it cannot verify, at most 256 from peers; what is not shaped like a revocation, not at all', async () => {
    const { trust, store } = await fixture();
    const notShaped = `${Buffer.from('{"alg":"EdDSA","typ":"tessera-revocation+jwt"}').toString('base64url')}.${Buffer.from('{"iss":"nobody","sub":"x"}').toString('base64url')}.c2ln`;
    await trust.addRevocations([notShaped, ...junkRevocations(300)]);
    expect(trust.rawRevocations()).toHaveLength(MAX_UNVERIFIED_REVOCATIONS);
    expect(trust.rawRevocations()).not.toContain(notShaped);
    expect(await count(store, Space.revocation)).toBe(MAX_UNVERIFIED_REVOCATIONS);
  });

  it('a genuine revocation from a trusted authority is taken however many unverifiable ones came first; a forged one claiming that authority is not kept', async () => {
    const admin = await generateKeyPair();
    const { trust } = await fixture([admin]);
    for (let k = 0; k < 40; k++) await trust.addRevocations(junkRevocations(250));
    const victim = await generateKeyPair();
    const forged = junkRevocation({ iss: admin.id, sub: victim.id });
    expect(await trust.addRevocations([forged])).toBe(false);
    expect(trust.isRevoked(victim.id)).toBe(false);
    const genuine = await issueRevocation(admin, victim.id);
    expect(await trust.addRevocations([genuine])).toBe(true);
    expect(trust.isRevoked(victim.id)).toBe(true);
    const held = trust.rawRevocations();
    expect(held[0]).toBe(genuine);
    expect(held).not.toContain(forged);
    expect(held).toHaveLength(1 + MAX_UNVERIFIED_REVOCATIONS);
  });

  it('those from its own grants file are kept beyond the cap (a relay passes on revocations of authorities it does not trust)', async () => {
    const { trust } = await fixture();
    await trust.addRevocations(junkRevocations(MAX_UNVERIFIED_REVOCATIONS));
    const other = await generateKeyPair();
    const untrusted = await issueRevocation(other, randomId() as NodeId);
    expect(await trust.addRevocations([untrusted])).toBe(false);
    expect(trust.rawRevocations()).not.toContain(untrusted);
    await trust.addRevocations([untrusted], { local: true });
    expect(trust.rawRevocations()).toContain(untrusted);
  });

  it('at start, stored ones beyond the cap are not loaded (they stay stored); trusted ones all are', async () => {
    const admin = await generateKeyPair();
    const path = join(await tempDir(), 'db');
    const victims = await Promise.all(Array.from({ length: 3 }, () => generateKeyPair()));
    const genuine = await Promise.all(victims.map((v) => issueRevocation(admin, v.id)));
    {
      // What an earlier version stored: 300 unverifiable ones next to the genuine ones.
      const store = await openStore(path);
      const put = (token: string, i: number) => ({ type: 'put' as const, space: Space.revocation, key: `k${String(i).padStart(5, '0')}`, value: Buffer.from(token) });
      await store.write([...junkRevocations(300), ...genuine].map(put));
      await store.close();
    }
    const { trust, store } = await fixture([admin], path);
    for (const v of victims) expect(trust.isRevoked(v.id)).toBe(true);
    expect(trust.rawRevocations()).toHaveLength(MAX_UNVERIFIED_REVOCATIONS + genuine.length);
    expect(await count(store, Space.revocation)).toBe(300 + genuine.length);
  });

  it('an authority added later makes a held revocation of it bind; removed, it stops binding but is still passed on', async () => {
    const admin = await generateKeyPair();
    const { trust, config } = await fixture();
    const victim = await generateKeyPair();
    const genuine = await issueRevocation(admin, victim.id);
    await trust.addRevocations([genuine]);
    expect(trust.isRevoked(victim.id)).toBe(false);
    config.current = { peers: [], authorities: [{ id: admin.id, publicKey: admin.publicJwk }] };
    await trust.refresh();
    expect(trust.isRevoked(victim.id)).toBe(true);
    config.current = { peers: [], authorities: [] };
    await trust.refresh();
    expect(trust.isRevoked(victim.id)).toBe(false);
    expect(trust.rawRevocations()).toContain(genuine);
  });
});

describe('grants a node keeps', () => {
  it('a grant from a trusted authority is never pushed out by ones it cannot verify, before or after it arrived', async () => {
    const admin = await generateKeyPair();
    const g = await generateKeyPair();
    const { trust } = await fixture([admin]);
    const before = [...Array.from({ length: 8 }, () => junkGrant(g.id, { iss: admin.id })), ...Array.from({ length: 8 }, () => junkGrant(g.id))];
    await trust.addGrants(before);
    const genuine = await grantOf(admin, g);
    await trust.addGrants([genuine], { presenter: g.id });
    await trust.addGrants(Array.from({ length: 20 }, () => junkGrant(g.id)));
    expect(trust.grantsFor(g.id).map((x) => x.token)).toEqual([genuine]);
    const raw = trust.rawGrantsFor(g.id);
    expect(raw[0]).toBe(genuine);
    // Forgeries claiming the trusted authority are not kept; the others are bounded.
    expect(raw.some((t) => before.slice(0, 8).includes(t))).toBe(false);
    expect(raw).toHaveLength(1 + MAX_GRANTS_PER_SUBJECT);
  });

  it('a relay that does not trust the authority keeps the grant its subject presented itself over any number relayed by others', async () => {
    const admin = await generateKeyPair();
    const g = await generateKeyPair();
    const relay = await fixture();
    const genuine = await grantOf(admin, g);
    await relay.trust.addGrants([genuine], { presenter: g.id });
    const mallory = randomId() as NodeId;
    for (let k = 0; k < 3; k++) await relay.trust.addGrants(Array.from({ length: 8 }, () => junkGrant(g.id)), { presenter: mallory });
    expect(relay.trust.rawGrantsFor(g.id)[0]).toBe(genuine);
    expect(relay.trust.rawGrantsFor(g.id)).toHaveLength(MAX_GRANTS_PER_SUBJECT);
    // Also when the junk came first, and when the subject presents it again after a relay passed it on.
    const other = await fixture();
    await other.trust.addGrants(Array.from({ length: 8 }, () => junkGrant(g.id)), { presenter: mallory });
    await other.trust.addGrants([genuine], { presenter: randomId() as NodeId });
    await other.trust.addGrants([genuine], { presenter: g.id });
    await other.trust.addGrants(Array.from({ length: 8 }, () => junkGrant(g.id)), { presenter: mallory });
    expect(other.trust.rawGrantsFor(g.id)).toContain(genuine);
  });

  it('a full table of made-up subjects still lets in a trusted grant, and a grant its subject presents, for a new subject', async () => {
    const admin = await generateKeyPair();
    const { trust, store } = await fixture([admin]);
    const junk = Array.from({ length: MAX_UNVERIFIED_SUBJECTS }, () => junkGrant(randomId()));
    await trust.addGrants(junk);
    const extra = junkGrant(randomId());
    expect(await trust.addGrants([extra])).toBe(false);
    const n = await generateKeyPair();
    const genuine = await grantOf(admin, n);
    expect(await trust.addGrants([genuine])).toBe(true);
    expect(trust.grantsFor(n.id).map((g) => g.token)).toEqual([genuine]);
    const p = await generateKeyPair();
    const own = junkGrant(p.id);
    expect(await trust.addGrants([own], { presenter: p.id })).toBe(true);
    expect(trust.rawGrantsFor(p.id)).toEqual([own]);
    expect(await count(store, Space.grant)).toBe(MAX_UNVERIFIED_SUBJECTS + 2);
  }, 60_000);
});

describe('what a start loads', () => {
  it('revocations from the grants file are kept beyond the cap after a restart, even once the file no longer lists them', async () => {
    const admin = await generateKeyPair();
    const { trust, store, path } = await fixture();
    const genuine = await Promise.all(Array.from({ length: 300 }, async () => issueRevocation(admin, randomId() as NodeId)));
    await trust.addRevocations(genuine, { local: true });
    expect(trust.rawRevocations()).toHaveLength(300);
    await store.close();
    const again = await fixture([], path);
    expect(again.trust.rawRevocations()).toHaveLength(300);
  });

  it('an authority removed and restored across a restart: all of its revocations bind again', async () => {
    const admin = await generateKeyPair();
    const { trust, store, path, config } = await fixture([admin]);
    const victims = Array.from({ length: 300 }, () => randomId() as NodeId);
    await trust.addRevocations(await Promise.all(victims.map((v) => issueRevocation(admin, v))));
    expect(victims.every((v) => trust.isRevoked(v))).toBe(true);
    config.current = { peers: [], authorities: [] };
    await trust.refresh();
    expect(trust.rawRevocations()).toHaveLength(300);
    await store.close();
    const again = await fixture([], path);
    again.config.current = { peers: [], authorities: [{ id: admin.id, publicKey: admin.publicJwk }] };
    await again.trust.refresh();
    expect(victims.filter((v) => !again.trust.isRevoked(v))).toHaveLength(0);
  });
});
