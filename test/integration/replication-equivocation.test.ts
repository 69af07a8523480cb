/**
 * Equivocation (DESIGN.md §4): two listed origins sign different structs
 * under one Yjs client id and clock range and hand them to two nodes. When
 * the nodes meet, each refuses the version it does not hold, keeps and counts
 * the envelope (the honest feed does not stall), and raises an alarm naming
 * both origins. Sessions are not cut: equivocation is not forgery.
 */
import { describe, expect, it } from 'vitest';
import { generateKeyPair } from '../../src/identity/keys.js';
import type { DocName, NodeId } from '../../src/types.js';
import { entryFor, peerState, setPeers, testNode, type TestNode } from '../helpers/cluster.js';
import { getDoc } from '../helpers/docs.js';
import { RawSyncPeer, envelope, newFeed, rawEntry, yUpdate } from '../helpers/raw-peer.js';
import { waitUntil } from '../helpers/wait.js';
import { withStore } from '../helpers/node.js';
import { Space } from '../../src/store/store.js';

const DOC = 'eq/doc' as DocName;
const CLIENT = 777;

/** Log lines of `node` that report an equivocation. */
const alarms = (node: TestNode) => node.lines.filter((l) => /equivocation/.test(String(l.msg)));

describe('equivocation', () => {
  it('different structs under one client id and clock range from two origins: refused where the other is held, alarm on both nodes naming both origins', async () => {
    const t1 = await testNode('t1');
    const t2 = await testNode('t2');
    const [mallory, o1, o2] = await Promise.all([generateKeyPair(), generateKeyPair(), generateKeyPair()]);
    const listed = [rawEntry('mallory', mallory), rawEntry('o1', o1, { read: [], write: ['**'] }), rawEntry('o2', o2, { read: [], write: ['**'] })];
    await setPeers(t1, listed);
    await setPeers(t2, listed);

    // Same client id, same clocks [0, 5), different content: one version to each node.
    const good = yUpdate(CLIENT, (d) => d.getText('t').insert(0, 'good!'));
    const evil = yUpdate(CLIENT, (d) => d.getText('t').insert(0, 'evil!'));
    const f1 = newFeed();
    const f2 = newFeed();
    const p1 = await RawSyncPeer.dial(t1.url, mallory, t1);
    const p2 = await RawSyncPeer.dial(t2.url, mallory, t2);
    p1.offer(envelope(o1, { doc: DOC, feed: f1, seq: 1, update: good }));
    p2.offer(envelope(o2, { doc: DOC, feed: f2, seq: 1, update: evil }));
    await waitUntil(async () => (await getDoc(t1, DOC)).body.t === 'good!', { what: 't1 holds the good version' });
    await waitUntil(async () => (await getDoc(t2, DOC)).body.t === 'evil!', { what: 't2 holds the evil version' });
    expect(alarms(t1)).toEqual([]);

    // The two nodes meet.
    await setPeers(t2, [...listed, entryFor(t1, { dial: false })]);
    await setPeers(t1, [...listed, entryFor(t2)]);
    await waitUntil(async () => (await peerState(t1, t2)) === 'connected' && (await peerState(t2, t1)) === 'connected', { what: 't1–t2 connected' });
    const session = t1.daemon.peerManager.session(t2.id as NodeId)!;
    const both = { [`${o1.id}:${f1}`]: 1, [`${o2.id}:${f2}`]: 1 };
    // Each envelope is kept and counted in its feed, on both nodes...
    await waitUntil(async () => Object.keys(await t1.daemon.docs.vector(DOC)).length === 2, { what: "t1 counted o2's envelope" });
    await waitUntil(async () => Object.keys(await t2.daemon.docs.vector(DOC)).length === 2, { what: "t2 counted o1's envelope" });
    expect(await t1.daemon.docs.vector(DOC)).toEqual(both);
    expect(await t2.daemon.docs.vector(DOC)).toEqual(both);
    // ...but the mismatching struct is refused where the other is held.
    expect((await getDoc(t1, DOC)).body.t).toBe('good!');
    expect((await getDoc(t2, DOC)).body.t).toBe('evil!');

    // The alarm, on both nodes, names both origins.
    for (const node of [t1, t2]) {
      await waitUntil(() => alarms(node).length > 0, { what: `${node.name} raised the alarm` });
      const line = JSON.stringify(alarms(node));
      expect(line).toContain(o1.id);
      expect(line).toContain(o2.id);
    }
    // And /v1/status shows it.
    for (const node of [t1, t2]) {
      const status = (await (await fetch(`${node.api}/v1/status`, { headers: { authorization: `Bearer ${await node.token()}` } })).json()) as { alarms: { doc: string; kind: string; origins: string[] }[] };
      const alarm = status.alarms.find((x) => x.kind === 'equivocation');
      expect(alarm?.doc).toBe(DOC);
      expect(new Set(alarm?.origins)).toEqual(new Set([o1.id, o2.id]));
    }
    const refused = alarms(t1).find((l) => l.refused)!.refused as { client: number; from: number; to: number; origins: string[] }[];
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatchObject({ client: CLIENT, from: 0, to: 5 });
    expect(new Set(refused[0]!.origins)).toEqual(new Set([o1.id, o2.id]));

    // The honest feed never stalls: o2's next envelope (no overlap) is applied on t1 too.
    p2.offer(envelope(o2, { doc: DOC, feed: f2, seq: 2, update: yUpdate(778, (d) => d.getText('u').insert(0, 'after')) }));
    await waitUntil(async () => (await getDoc(t1, DOC)).body.u === 'after', { what: "o2's next envelope reached t1" });
    expect((await t1.daemon.docs.vector(DOC))[`${o2.id}:${f2}`]).toBe(2);

    // No one was disconnected for it; both stores verify.
    expect(t1.daemon.peerManager.session(t2.id as NodeId)).toBe(session);
    expect(session.closed).toBe(false);
    expect(p1.isOpen && p2.isOpen).toBe(true);
    for (const node of [t1, t2]) {
      expect(node.lines.filter((l) => l.msg === 'envelope refused' && l.reason === 'forgery')).toEqual([]);
      expect((await node.daemon.verify()).ok).toBe(true);
    }
  });

  it('the same equivocation offered to one node directly: the second version is refused with an alarm naming both', async () => {
    const t = await testNode('t');
    const [mallory, o1, o2] = await Promise.all([generateKeyPair(), generateKeyPair(), generateKeyPair()]);
    await setPeers(t, [rawEntry('mallory', mallory), rawEntry('o1', o1, { read: [], write: ['**'] }), rawEntry('o2', o2, { read: [], write: ['**'] })]);
    const p = await RawSyncPeer.dial(t.url, mallory, t);
    const f1 = newFeed();
    const f2 = newFeed();
    // Map entries this time: one key set to two different values under one id.
    p.offer(envelope(o1, { doc: DOC, feed: f1, seq: 1, update: yUpdate(CLIENT, (d) => d.getMap('m').set('k', 'one')) }));
    p.offer(envelope(o2, { doc: DOC, feed: f2, seq: 1, update: yUpdate(CLIENT, (d) => d.getMap('m').set('k', 'two')) }));
    await waitUntil(async () => Object.keys(await t.daemon.docs.vector(DOC)).length === 2, { what: 'both counted' });
    expect((await getDoc(t, DOC)).body).toEqual({ m: { k: 'one' } });
    await waitUntil(() => alarms(t).length > 0, { what: 'alarm' });
    const line = JSON.stringify(alarms(t));
    expect(line).toContain(o1.id);
    expect(line).toContain(o2.id);
    expect(p.isOpen).toBe(true);
  });

  it('a copy of the version kept, arriving after the refused one, passes with no new alarm: only the first carrier counts', async () => {
    const t = await testNode('t');
    const [o1, o2, o3] = await Promise.all([generateKeyPair(), generateKeyPair(), generateKeyPair()]);
    await setPeers(t, [o1, o2, o3].map((o, i) => rawEntry(`o${i + 1}`, o, { read: [], write: ['**'] })));
    const equivocations: unknown[] = [];
    t.daemon.docs.on('alarm', (a: { kind: string }) => a.kind === 'equivocation' && equivocations.push(a));
    const good = yUpdate(CLIENT, (d) => d.getText('t').insert(0, 'good!'));
    await t.daemon.docs.receive(o1.id as NodeId, [envelope(o1, { doc: DOC, feed: newFeed(), seq: 1, update: good })]);
    await t.daemon.docs.receive(o2.id as NodeId, [envelope(o2, { doc: DOC, feed: newFeed(), seq: 1, update: yUpdate(CLIENT, (d) => d.getText('t').insert(0, 'evil!')) })]);
    expect(equivocations).toHaveLength(1);
    // The kept version again, relayed by a third origin (an app that failed over, say): nothing to refuse.
    const out = await t.daemon.docs.receive(o3.id as NodeId, [envelope(o3, { doc: DOC, feed: newFeed(), seq: 1, update: good })]);
    expect(out.accepted).toBe(1);
    expect(equivocations).toHaveLength(1);
    expect((await getDoc(t, DOC)).body).toEqual({ t: 'good!' });
  });

  it('a document replayed from its envelopes (no snapshot) keeps the version that arrived first, though replay goes feed by feed', async () => {
    const t = await testNode('t', { snapshotEvery: 1000 });
    const [o1, o2] = await Promise.all([generateKeyPair(), generateKeyPair()]);
    await setPeers(t, [o1, o2].map((o, i) => rawEntry(`o${i + 1}`, o, { read: [], write: ['**'] })));
    const [fx, fy] = [newFeed(), newFeed()];
    const other = (client: number, text: string) => yUpdate(client, (d) => d.getText('u').insert(0, text));
    // Feed x starts first, so replay reads all of x before y; but y's conflicting envelope arrives before x's.
    await t.daemon.docs.receive(o1.id as NodeId, [envelope(o1, { doc: DOC, feed: fx, seq: 1, update: other(11, 'x') })]);
    await t.daemon.docs.receive(o2.id as NodeId, [envelope(o2, { doc: DOC, feed: fy, seq: 1, update: other(12, 'y') })]);
    await t.daemon.docs.receive(o2.id as NodeId, [envelope(o2, { doc: DOC, feed: fy, seq: 2, update: yUpdate(CLIENT, (d) => d.getText('t').insert(0, 'first')) })]);
    await t.daemon.docs.receive(o1.id as NodeId, [envelope(o1, { doc: DOC, feed: fx, seq: 2, update: yUpdate(CLIENT, (d) => d.getText('t').insert(0, 'later')) })]);
    expect((await getDoc(t, DOC)).body.t).toBe('first');
    await t.daemon.stop();
    // As after a crash before any snapshot: the document loads from its envelopes alone.
    await withStore(t.dir, (store) => store.write([{ type: 'del', space: Space.snapshot, key: DOC }]));
    const again = await testNode('t', {}, t.dir);
    expect((await getDoc(again, DOC)).body.t).toBe('first');
  });
});
