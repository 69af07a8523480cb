import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { describe, expect, it } from 'vitest';
import { entryFor, peerState, setPeers, status, testNode, type TestNode } from '../helpers/cluster.js';
import { getDoc } from '../helpers/docs.js';
import { waitUntil } from '../helpers/wait.js';
import { authority, digests, feedOf, grantFor, hashCutoff, nodeOn, revocationOf, vectorOf, write, writeGrants } from '../helpers/authority.js';

const connected = async (a: TestNode, b: TestNode) => (await peerState(a, b)) === 'connected';
const listsConnected = async (n: TestNode, peer: TestNode) => (await status(n)).peers.some((p) => p.id === peer.id && p.state === 'connected');

async function oneDigest(nodes: TestNode[], doc: string): Promise<boolean> {
  return new Set(Object.values(await digests(nodes, doc))).size === 1;
}

describe('authority revocations spread and bind everywhere', () => {
  it('a revocation loaded on one node of a ring of four spreads to all and cuts the node off everywhere, even through a relay that does not trust the authority', async () => {
    const admin = await authority();
    const ring: TestNode[] = [];
    for (let i = 0; i < 4; i++) ring.push(await testNode(`n${i}`));
    const r = await testNode('r');
    const x = await testNode('x');
    // A ring n0-n1-n2-n3-n0 of pinned peers that trust the authority; n2 also pins x, a relay that does not.
    const ringEntries = (i: number) => [entryFor(ring[(i + 1) % 4]!), entryFor(ring[(i + 3) % 4]!, { dial: false })];
    for (let i = 0; i < 4; i++) await setPeers(ring[i]!, [...ringEntries(i), ...(i === 2 ? [entryFor(x, { dial: false })] : [])], [admin.entry]);
    // Each dialled before the next listed it: dial again now that every file is in place.
    for (let i = 0; i < 4; i++) ring[i]!.daemon.peerManager.redialNow(ring[(i + 1) % 4]!.id as never);
    await setPeers(x, [entryFor(ring[2]!), entryFor(r, { dial: false })]);
    await waitUntil(async () => {
      for (let i = 0; i < 4; i++) if (!(await connected(ring[i]!, ring[(i + 1) % 4]!))) return false;
      return connected(x, ring[2]!);
    }, { what: 'the ring and x connected' });
    // r is admitted by its grant on every ring node; x knows it by peers entry.
    await writeGrants(r, [await grantFor(admin, r)]);
    await setPeers(r, [...ring.map((n) => entryFor(n)), entryFor(x)]);
    await waitUntil(async () => {
      for (const n of ring) if (!(await connected(r, n)) || !(await listsConnected(n, r))) return false;
      return connected(r, x);
    }, { what: 'r admitted everywhere' });

    await write(r, 'd', (d) => d.getMap('m').set('before', 1));
    const rFeed = feedOf(r);
    await waitUntil(async () => {
      for (const n of ring) if ((await vectorOf(n, 'd'))[rFeed] !== 1) return false;
      return true;
    }, { what: 'the ring holds r\'s first write' });

    // Loaded on n0 only: n2 hears of it two hops away.
    await writeGrants(ring[0]!, [], [await revocationOf(admin, r, { d: { [rFeed]: 1 } })]);
    await waitUntil(async () => {
      for (const n of ring) if ((await connected(r, n)) || (await listsConnected(n, r))) return false;
      return true;
    }, { what: 'r cut off by all four' });
    // A redial is refused everywhere (revoked, before authentication).
    for (const n of ring) r.daemon.peerManager.redialNow(n.id as never);
    await waitUntil(() => ring.every((n) => r.lines.some((l) => l.msg === 'peer refused us; retrying much later' && l.peer === n.id && String(l.err).includes('revoked'))), { what: 'every ring node refuses r as revoked' });

    // r writes on; x (not bound) relays it to n2, which drops it.
    await write(r, 'd', (d) => d.getMap('m').set('after', 2));
    await waitUntil(async () => ((await getDoc(x, 'd')).body.m as Record<string, unknown>)?.after === 2, { what: 'x has r\'s later write' });
    await waitUntil(() => ring[2]!.lines.some((l) => l.msg === 'envelope refused' && l.feed === rFeed && l.seq === 2 && l.detail === 'beyond a revocation cutoff'), { what: 'n2 drops it' });
    for (const n of ring) {
      expect((await getDoc(n, 'd')).body, n.name).toEqual({ m: { before: 1 } });
      expect((await vectorOf(n, 'd'))[rFeed], n.name).toBe(1);
    }
    expect(await oneDigest(ring, 'd')).toBe(true);
    expect((await getDoc(x, 'd')).body).toEqual({ m: { before: 1, after: 2 } });
  });

  it('two different cutoffs for one node (a peers-file entry and an authority revocation) merge to the lowest per feed, the same on every node, whatever the order', async () => {
    const admin = await authority();
    const a = await testNode('a');
    const b = await testNode('b');
    const c = await testNode('c');
    let r = await testNode('r');
    const rEntry = () => entryFor(r, { dial: false });
    const mesh = (self: TestNode, extra: Record<string, unknown>[] = []) => [...[a, b, c].filter((n) => n !== self).map((n) => entryFor(n, { dial: n.name > self.name })), ...extra];
    // Listeners first (c dials nobody, b dials c, a dials both), so that no dial meets an unknown-peer refusal.
    for (const n of [c, b, a]) await setPeers(n, mesh(n, [rEntry()]), [admin.entry]);
    await setPeers(r, [entryFor(a)]);
    await waitUntil(async () => (await connected(r, a)) && (await connected(b, c)) && (await connected(a, b)) && (await connected(a, c)), { what: 'mesh up' });

    // Feed f1: three envelopes in each of d1 and d2.
    for (let i = 1; i <= 3; i++) {
      await write(r, 'd1', (d) => d.getMap('m').set(`f1s${i}`, i));
      await write(r, 'd2', (d) => d.getMap('m').set(`s${i}`, i));
    }
    const f1 = feedOf(r);
    // r loses its store: a new feed f2 for the same node, three more envelopes in d1.
    await r.daemon.stop();
    await rm(join(r.dir, 'store'), { recursive: true, force: true });
    r = await nodeOn(r.dir, 'r');
    const f2 = feedOf(r);
    expect(f2).not.toBe(f1);
    await waitUntil(() => connected(r, a), { what: 'the restarted r connected to a' });
    for (let i = 1; i <= 3; i++) await write(r, 'd1', (d) => d.getMap('m').set(`f2s${i}`, i));
    await waitUntil(async () => {
      for (const n of [a, b, c]) {
        const v1 = await vectorOf(n, 'd1');
        if (v1[f1] !== 3 || v1[f2] !== 3 || (await vectorOf(n, 'd2'))[f1] !== 3) return false;
      }
      return true;
    }, { what: 'every node holds both feeds' });

    // Peers file: d1 {f1: 1, f2: 3}. Authority: d1 {f1: 3, f2: 1}, d2 {f1: 2}. Lowest per feed: d1 {f1: 1, f2: 1}, d2 {f1: 2}.
    const revoked = { at: new Date().toISOString(), cutoff: hashCutoff({ d1: { [f1]: 1, [f2]: 3 } }) };
    const authorityRevocation = await revocationOf(admin, r, { d1: { [f1]: 3, [f2]: 1 }, d2: { [f1]: 2 } });
    await setPeers(a, mesh(a, [{ ...rEntry(), revoked }]), [admin.entry]);
    await waitUntil(async () => (await vectorOf(a, 'd1'))[f1] === 1, { what: 'a applied its peers-file cutoff' });
    await writeGrants(b, [], [authorityRevocation]);
    await waitUntil(async () => (await vectorOf(c, 'd1'))[f2] === 1, { what: 'the authority revocation reached c' });
    await setPeers(b, mesh(b, [{ ...rEntry(), revoked }]), [admin.entry]);
    await setPeers(c, mesh(c, [{ ...rEntry(), revoked }]), [admin.entry]);

    const expected = { d1: { m: { f1s1: 1, f2s1: 1 } }, d2: { m: { s1: 1, s2: 2 } } };
    await waitUntil(async () => {
      for (const n of [a, b, c]) for (const doc of ['d1', 'd2'] as const) if (!isDeepStrictEqual((await getDoc(n, doc)).body, expected[doc])) return false;
      return true;
    }, { what: 'every node on the lowest cutoff per feed' });
    for (const n of [a, b, c]) {
      expect(await vectorOf(n, 'd1'), n.name).toMatchObject({ [f1]: 1, [f2]: 1 });
      expect(await vectorOf(n, 'd2'), n.name).toMatchObject({ [f1]: 2 });
      expect((await n.daemon.verify()).ok, n.name).toBe(true);
    }
    expect(await oneDigest([a, b, c], 'd1')).toBe(true);
    expect(await oneDigest([a, b, c], 'd2')).toBe(true);
  });

  it('envelopes for a document no revocation names are quarantined (kept, counted, forwarded, not applied, alarm) until a cutoff names it, then applied everywhere', async () => {
    const a = await testNode('a');
    const b = await testNode('b');
    const x = await testNode('x');
    const r = await testNode('r');
    const rEntry = entryFor(r, { dial: false });
    const aPeers = (rev?: unknown) => [entryFor(b, { dial: false }), entryFor(x, { dial: false }), rev ? { ...rEntry, revoked: rev } : rEntry];
    const bPeers = (rev?: unknown) => [entryFor(a), rev ? { ...rEntry, revoked: rev } : rEntry];
    await setPeers(a, aPeers());
    await setPeers(b, bPeers());
    // x relays r's envelopes to a and never revokes r.
    await setPeers(x, [entryFor(a), rEntry]);
    await setPeers(r, [entryFor(x)]);
    await waitUntil(async () => (await connected(b, a)) && (await connected(x, a)) && (await connected(r, x)), { what: 'r-x-a-b up' });
    await write(r, 'd1', (d) => d.getMap('m').set('k', 1));
    const rFeed = feedOf(r);
    await waitUntil(async () => (await vectorOf(b, 'd1'))[rFeed] === 1, { what: 'b holds r\'s d1' });

    // a and b revoke r with a cutoff that names d1 only.
    const named = (docs: Record<string, Record<string, number>>) => ({ at: new Date().toISOString(), cutoff: hashCutoff(docs) });
    await setPeers(a, aPeers(named({ d1: { [rFeed]: 1 } })));
    await setPeers(b, bPeers(named({ d1: { [rFeed]: 1 } })));
    await write(r, 'd2', (d) => d.getMap('m').set('q', 'quarantined'));
    await waitUntil(async () => (await vectorOf(a, 'd2'))[rFeed] === 1 && (await vectorOf(b, 'd2'))[rFeed] === 1, { what: 'a keeps, counts and forwards r\'s d2 envelope' });
    for (const n of [a, b]) {
      expect((await getDoc(n, 'd2')).body, `${n.name}: not applied`).toEqual({});
      await waitUntil(async () => ((await status(n)).alarms as { doc: string; kind: string; origins: string[] }[]).some((al) => al.doc === 'd2' && al.kind === 'quarantined' && al.origins.includes(r.id)), { what: `${n.name} raises a quarantine alarm` });
    }
    expect(await oneDigest([a, b], 'd2')).toBe(true);

    // The cutoff now names d2: what was quarantined is found everywhere and applied.
    await setPeers(a, aPeers(named({ d1: { [rFeed]: 1 }, d2: { [rFeed]: 1 } })));
    await setPeers(b, bPeers(named({ d1: { [rFeed]: 1 }, d2: { [rFeed]: 1 } })));
    for (const n of [a, b]) await waitUntil(async () => isDeepStrictEqual((await getDoc(n, 'd2')).body, { m: { q: 'quarantined' } }), { what: `${n.name} applies d2` });
    expect(await oneDigest([a, b, x], 'd2')).toBe(true);
  });
});
