import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { entryFor, peerState, setPeers, testNode, type TestNode } from '../helpers/cluster.js';
import { getDoc } from '../helpers/docs.js';
import { withStore, writePeers } from '../helpers/node.js';
import { waitUntil } from '../helpers/wait.js';
import { authority, digestOf, feedOf, grantFor, hashCutoff, nodeOn, revocationOf, vectorOf, write, writeGrants } from '../helpers/authority.js';
import { Space, json } from '../../src/store/store.js';

const connected = async (a: TestNode, b: TestNode) => (await peerState(a, b)) === 'connected';

/** h holds three envelopes of r in doc `d` (keys s1..s3) and one of its own (key `own`); both stopped afterwards if asked. */
async function heldThree(opts: { authority?: Awaited<ReturnType<typeof authority>> } = {}) {
  const h = await testNode('h');
  const r = await testNode('r');
  if (opts.authority) {
    await writeGrants(r, [await grantFor(opts.authority, r)]);
    await setPeers(h, [], [opts.authority.entry]);
  } else {
    await setPeers(h, [entryFor(r, { dial: false })]);
  }
  await setPeers(r, [entryFor(h)]);
  await waitUntil(() => connected(r, h), { what: 'r connected to h' });
  for (let i = 1; i <= 3; i++) await write(r, 'd', (d) => d.getMap('m').set(`s${i}`, i));
  await write(h, 'd', (d) => d.getMap('m').set('own', true));
  const rFeed = feedOf(r);
  await waitUntil(async () => (await vectorOf(h, 'd'))[rFeed] === 3, { what: 'h holds r\'s three envelopes' });
  expect((await getDoc(h, 'd')).body).toEqual({ m: { s1: 1, s2: 2, s3: 3, own: true } });
  return { h, r, rFeed };
}

/** A late joiner that pins `h` and revokes r with the same cutoff: it drops anything beyond it that h still forwards. */
async function lateJoiner(h: TestNode, r: TestNode, cutoff: Record<string, Record<string, number>>, authorities: unknown[] = []) {
  const late = await testNode('late');
  await setPeers(h, [entryFor(late, { dial: false }), ...(authorities.length ? [] : [{ ...entryFor(r, { dial: false }), revoked: { at: new Date().toISOString(), cutoff } }])], authorities);
  await setPeers(late, [entryFor(h), { ...entryFor(r, { dial: false }), revoked: { at: new Date().toISOString(), cutoff } }], authorities);
  await waitUntil(
    async () => late.lines.some((l) => l.msg === 'envelope refused') || JSON.stringify(await vectorOf(late, 'd')) === JSON.stringify(await vectorOf(h, 'd')),
    { what: 'the late joiner holds what h holds (or refused something)' },
  );
  return late;
}

describe('revocation removed, and crash-safe rebuilds', () => {
  it('a revocation removed again (peers-file revoked entry deleted): documents rebuilt with the dropped envelopes restored', async () => {
    const h = await testNode('h');
    const o = await testNode('o');
    const r = await testNode('r');
    await setPeers(h, [entryFor(o, { dial: false }), entryFor(r, { dial: false })]);
    await setPeers(o, [entryFor(h), entryFor(r, { dial: false })]);
    await setPeers(r, [entryFor(o)]);
    await waitUntil(async () => (await connected(o, h)) && (await connected(r, o)), { what: 'r-o-h up' });
    for (let i = 1; i <= 3; i++) await write(r, 'd', (d) => d.getMap('m').set(`s${i}`, i));
    const rFeed = feedOf(r);
    await waitUntil(async () => (await vectorOf(h, 'd'))[rFeed] === 3, { what: 'h holds three of r\'s envelopes' });

    const revoked = { at: new Date().toISOString(), cutoff: hashCutoff({ d: { [rFeed]: 1 } }) };
    await setPeers(h, [entryFor(o, { dial: false }), { ...entryFor(r, { dial: false }), revoked }]);
    await waitUntil(async () => (await vectorOf(h, 'd'))[rFeed] === 1, { what: 'h cut r back to 1' });
    expect((await getDoc(h, 'd')).body).toEqual({ m: { s1: 1 } });
    // More of r arrives through o while revoked: dropped on arrival.
    for (let i = 4; i <= 5; i++) await write(r, 'd', (d) => d.getMap('m').set(`s${i}`, i));
    await waitUntil(() => h.lines.some((l) => l.msg === 'envelope refused' && l.feed === rFeed && l.seq === 4 && l.detail === 'beyond a revocation cutoff'), { what: 'h drops r\'s 4th envelope' });
    expect((await getDoc(h, 'd')).body).toEqual({ m: { s1: 1 } });

    // The admin deletes the revoked entry's "revoked": everything comes back.
    await setPeers(h, [entryFor(o, { dial: false }), entryFor(r, { dial: false })]);
    await waitUntil(async () => (await vectorOf(h, 'd'))[rFeed] === 5, { what: 'r\'s feed restored to 5 on h' });
    expect((await getDoc(h, 'd')).body).toEqual({ m: { s1: 1, s2: 2, s3: 3, s4: 4, s5: 5 } });
    expect(await digestOf(h, 'd')).toBe(await digestOf(o, 'd'));
    expect((await h.daemon.verify()).ok).toBe(true);
  });

  it('a restart with a "rebuild" mark in the store redoes the rebuild at start', async () => {
    const { h, r, rFeed } = await heldThree();
    await r.daemon.stop();
    await h.daemon.stop();
    // A crash in the middle of applying a peers-file revocation: the new file is in place, the mark is in the store.
    const cutoff = hashCutoff({ d: { [rFeed]: 1 } });
    await writePeers(h.dir, { peers: [{ ...entryFor(r, { dial: false }), revoked: { at: new Date().toISOString(), cutoff } }], authorities: [] });
    await withStore(h.dir, (store) => store.write([{ type: 'put', space: Space.meta, key: 'rebuild', value: json.encode([r.id]) }]));

    const h2 = await nodeOn(h.dir, 'h');
    expect(h2.lines.some((l) => l.msg === 'revocations changed: documents rebuilt')).toBe(true);
    expect((await vectorOf(h2, 'd'))[rFeed]).toBe(1);
    expect((await getDoc(h2, 'd')).body).toEqual({ m: { s1: 1, own: true } });
    expect((await h2.daemon.verify()).ok).toBe(true);
    const late = await lateJoiner(h2, r, cutoff);
    expect(late.lines.some((l) => l.msg === 'envelope refused')).toBe(false);
    const same = await waitUntil(async () => (await digestOf(late, 'd')) === (await digestOf(h2, 'd')), { what: 'one digest', timeoutMs: 10_000 });
    expect(same).toBe(true);
    await h2.daemon.stop();
    // The mark is gone once the rebuild is done.
    await withStore(h.dir, async (store) => expect(await store.get(Space.meta, 'rebuild')).toBeUndefined());
  });

  it('a crash after an authority revocation was stored but before its rebuild: the rebuild happens at start', async () => {
    const admin = await authority();
    const { h, r, rFeed } = await heldThree({ authority: admin });
    await r.daemon.stop();
    await h.daemon.stop();
    // Exactly what Trust.addRevocations persists before the rebuild starts.
    const token = await revocationOf(admin, r, { d: { [rFeed]: 1 } });
    await withStore(h.dir, (store) => store.write([{ type: 'put', space: Space.revocation, key: createHash('sha256').update(token).digest('hex').slice(0, 32), value: Buffer.from(token) }]));

    const h2 = await nodeOn(h.dir, 'h');
    expect.soft((await vectorOf(h2, 'd'))[rFeed], 'r\'s feed cut back at start').toBe(1);
    expect.soft((await getDoc(h2, 'd')).body).toEqual({ m: { s1: 1, own: true } });
  });

  it('a revocation added to the peers file while the node was stopped is in force at start: same document as a node that never held the dropped part', async () => {
    const { h, r, rFeed } = await heldThree();
    await r.daemon.stop();
    await h.daemon.stop();
    const cutoff = hashCutoff({ d: { [rFeed]: 1 } });
    await writePeers(h.dir, { peers: [{ ...entryFor(r, { dial: false }), revoked: { at: new Date().toISOString(), cutoff } }], authorities: [] });

    const h2 = await nodeOn(h.dir, 'h');
    expect.soft((await getDoc(h2, 'd')).body).toEqual({ m: { s1: 1, own: true } });
    expect.soft((await vectorOf(h2, 'd'))[rFeed]).toBe(1);
    const late = await lateJoiner(h2, r, cutoff);
    expect(late.lines.some((l) => l.msg === 'envelope refused' && l.feed === rFeed), 'h forwarded envelopes beyond the cutoff').toBe(false);
    const same = await waitUntil(async () => (await digestOf(late, 'd')) === (await digestOf(h2, 'd')), { what: 'one digest', timeoutMs: 10_000 });
    expect(same).toBe(true);
  });
});
