/**
 * A partition the test controls (TCP proxies between nodes, cut and healed):
 * writes on both sides of it, each side converging on its own, and everyone
 * converging once it heals (DESIGN.md §5: vectors, not a full resend).
 */
import { describe, expect, it } from 'vitest';
import { entryFor, peerState, setPeers, testNode, type TestNode } from '../helpers/cluster.js';
import { appDoc, getDoc, postUpdate } from '../helpers/docs.js';
import { tcpProxy } from '../helpers/proxy.js';
import { waitUntil } from '../helpers/wait.js';
import type { DocName } from '../../src/types.js';

const DOC = 'part/doc';
// The dialler retries quickly, so a healed link comes back without waiting out a long backoff.
const FAST = { reconnectMax: '500ms' };

async function items(node: TestNode): Promise<string[]> {
  const res = await getDoc(node, DOC);
  return res.status === 200 ? ((res.body.a as string[] | undefined) ?? []) : [];
}

const sorted = (xs: string[]) => [...xs].sort();

describe('replication across a partition', () => {
  it('writes on both sides of a cut link converge once it heals', async () => {
    // a and b share one side (direct link); c is on the other, reaching each through a proxy.
    const a = await testNode('a', FAST);
    const b = await testNode('b', FAST);
    const c = await testNode('c', FAST);
    const toA = await tcpProxy({ port: a.daemon.peerAddress.port });
    const toB = await tcpProxy({ port: b.daemon.peerAddress.port });
    await setPeers(a, [entryFor(b, { dial: false }), entryFor(c, { dial: false })]);
    await setPeers(b, [entryFor(a), entryFor(c, { dial: false })]);
    await setPeers(c, [{ ...entryFor(a), url: toA.url }, { ...entryFor(b), url: toB.url }]);
    const linked = async (x: TestNode, y: TestNode) => (await peerState(x, y)) === 'connected' && (await peerState(y, x)) === 'connected';
    await waitUntil(async () => (await linked(a, b)) && (await linked(c, a)) && (await linked(c, b)), { what: 'all linked' });
    expect(toA.open).toBeGreaterThan(0);
    expect(toB.open).toBeGreaterThan(0);

    const apps = { a: appDoc(), b: appDoc(), c: appDoc() };
    const write = async (node: TestNode, app: ReturnType<typeof appDoc>, item: string) => {
      const res = await postUpdate(node, DOC, app.edit((d) => d.getArray('a').push([item])));
      expect(res.status).toBe(200);
    };
    await write(a, apps.a, 'a-before');
    await write(c, apps.c, 'c-before');
    await waitUntil(async () => (await Promise.all([a, b, c].map(items))).every((xs) => xs.length === 2), { what: 'converged before the cut' });

    toA.cut();
    toB.cut();
    await waitUntil(async () => (await peerState(c, a)) !== 'connected' && (await peerState(c, b)) !== 'connected' && (await peerState(a, c)) !== 'connected' && (await peerState(b, c)) !== 'connected', {
      what: 'c partitioned from a and b',
    });

    for (let i = 0; i < 5; i++) {
      await write(a, apps.a, `a-during-${i}`);
      await write(b, apps.b, `b-during-${i}`);
      await write(c, apps.c, `c-during-${i}`);
    }
    // Each side converges on its own while the link is down.
    await waitUntil(async () => (await items(a)).length === 12 && (await items(b)).length === 12, { what: 'a and b converged with each other' });
    expect(sorted(await items(a))).toEqual(sorted(await items(b)));
    expect(sorted(await items(c))).toEqual(sorted(['a-before', 'c-before', ...[0, 1, 2, 3, 4].map((i) => `c-during-${i}`)]));
    expect((await items(a)).some((x) => x.startsWith('c-during'))).toBe(false);

    const forwardedBefore = toA.forwarded + toB.forwarded;
    toA.heal();
    toB.heal();
    await waitUntil(async () => (await Promise.all([a, b, c].map(items))).every((xs) => xs.length === 17), { what: 'all three converged after the heal', timeoutMs: 30_000 });
    expect(toA.forwarded + toB.forwarded).toBeGreaterThan(forwardedBefore);

    const all = await Promise.all([a, b, c].map(items));
    for (const xs of all) {
      expect(sorted(xs)).toEqual(sorted(all[0]!));
      expect(new Set(xs).size).toBe(17);
    }
    const vectors = await Promise.all([a, b, c].map((n) => n.daemon.docs.vector(DOC as DocName)));
    for (const v of vectors) expect(v).toEqual(vectors[0]);
    expect(vectors[0]).toEqual({ [a.daemon.docs.ownFeed]: 6, [b.daemon.docs.ownFeed]: 5, [c.daemon.docs.ownFeed]: 6 });
    const digests = await Promise.all([a, b, c].map((n) => n.daemon.docs.digest(DOC as DocName)));
    expect(new Set(digests).size).toBe(1);
    for (const n of [a, b, c]) expect((await n.daemon.verify()).ok).toBe(true);
  });

  it('a link cut while envelopes stream loses none of them', async () => {
    const a = await testNode('a', FAST);
    const b = await testNode('b', FAST);
    const toA = await tcpProxy({ port: a.daemon.peerAddress.port });
    await setPeers(a, [entryFor(b, { dial: false })]);
    await setPeers(b, [{ ...entryFor(a), url: toA.url }]);
    await waitUntil(async () => (await peerState(b, a)) === 'connected', { what: 'b connected through the proxy' });

    // Stream writes on a; cut and heal the link twice while they flow.
    const app = appDoc();
    const n = 200;
    const writing = (async () => {
      for (let i = 0; i < n; i++) {
        const res = await postUpdate(a, DOC, app.edit((d) => d.getArray('a').push([`x${i}`])));
        expect(res.status).toBe(200);
      }
    })();
    for (let k = 0; k < 2; k++) {
      await waitUntil(async () => (await items(b)).length > (k + 1) * 20, { what: `b received some writes (${k})` });
      toA.cut();
      await waitUntil(async () => (await peerState(b, a)) !== 'connected', { what: 'link down' });
      toA.heal();
      await waitUntil(async () => (await peerState(b, a)) === 'connected', { what: 'link back' });
    }
    await writing;
    await waitUntil(async () => (await items(b)).length === n, { what: 'b has every write', timeoutMs: 30_000 });
    expect(await items(b)).toEqual(await items(a));
    expect(await b.daemon.docs.vector(DOC as DocName)).toEqual(await a.daemon.docs.vector(DOC as DocName));
    expect((await b.daemon.verify()).ok).toBe(true);
  });
});
