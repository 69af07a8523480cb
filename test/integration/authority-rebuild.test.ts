import { describe, expect, it, onTestFinished } from 'vitest';
import * as Y from 'yjs';
import WebSocket from 'ws';
import { WebsocketProvider } from 'y-websocket';
import { entryFor, peerState, setPeers, status, testNode, type TestNode } from '../helpers/cluster.js';
import { appDoc, getDoc, postUpdate } from '../helpers/docs.js';
import { tcpProxy } from '../helpers/proxy.js';
import { waitUntil } from '../helpers/wait.js';
import { authority, docHash, digests, feedOf, grantFor, revocationOf, vectorOf, writeGrants } from '../helpers/authority.js';

const connected = async (a: TestNode, b: TestNode) => (await peerState(a, b)) === 'connected';

function provider(node: TestNode, doc: string, token: string, ydoc = new Y.Doc()) {
  const p = new WebsocketProvider(`ws://127.0.0.1:${node.daemon.apiAddress.port}/v1/yjs`, doc, ydoc, { WebSocketPolyfill: WebSocket as never, params: { token }, disableBc: true });
  onTestFinished(() => {
    p.destroy();
    ydoc.destroy();
  });
  return { p, ydoc };
}

async function allEqual(nodes: TestNode[], doc: string): Promise<boolean> {
  return new Set(Object.values(await digests(nodes, doc))).size === 1;
}

describe('deterministic rebuilds', () => {
  it('a node that held content beyond the cutoff rebuilds to the same document (digest) as a late joiner that never held it', async () => {
    const admin = await authority();
    const a = await testNode('a');
    const b = await testNode('b');
    const r = await testNode('r');
    await writeGrants(r, [await grantFor(admin, r)]);
    await setPeers(a, [entryFor(b, { dial: false })], [admin.entry]);
    await setPeers(b, [entryFor(a)], [admin.entry]);
    await setPeers(r, [entryFor(a)]);
    await waitUntil(async () => (await connected(b, a)) && (await connected(r, a)), { what: 'b and r connected to a' });

    // r's app: three envelopes, the second building on the first; a's app then builds on r's second.
    const app = appDoc();
    await postUpdate(r, 't', app.edit((d) => d.getText('t').insert(0, 'kept ')));
    await postUpdate(r, 't', app.edit((d) => d.getText('t').insert(5, 'dropped')));
    await postUpdate(r, 't', app.edit((d) => d.getMap('m').set('late', true)));
    const rFeed = feedOf(r);
    await waitUntil(async () => (await vectorOf(a, 't'))[rFeed] === 3 && (await vectorOf(b, 't'))[rFeed] === 3, { what: 'a and b hold r\'s three envelopes' });
    await waitUntil(async () => (await getDoc(a, 't')).body.t === 'kept dropped');
    const honest = appDoc();
    Y.applyUpdate(honest.doc, Y.encodeStateAsUpdate(app.doc));
    await postUpdate(a, 't', honest.edit((d) => d.getText('t').insert(12, '!')));
    // An independent edit (another client) that does not depend on r's content.
    await postUpdate(a, 't', appDoc().edit((d) => d.getMap('m').set('a', 1)));
    await waitUntil(async () => (await getDoc(b, 't')).body.t === 'kept dropped!', { what: 'b has a\'s edits' });
    // An app on a's copy of the document: told to reload when it is rebuilt.
    const live = provider(a, 't', await a.token());
    await waitUntil(() => live.p.synced, { what: 'app synced on a' });
    const reload = new Promise<number>((resolve) => live.p.on('connection-close', (e) => resolve((e as { code: number } | null)?.code ?? -1)));

    await writeGrants(a, [], [await revocationOf(admin, r, { t: { [rFeed]: 1 } })]);
    await waitUntil(async () => (await vectorOf(a, 't'))[rFeed] === 1 && (await vectorOf(b, 't'))[rFeed] === 1, { what: 'a and b cut r\'s feed back to the cutoff' });
    expect(await reload).toBe(4410);

    const late = await testNode('late');
    await setPeers(a, [entryFor(b, { dial: false }), entryFor(late, { dial: false })], [admin.entry]);
    await setPeers(late, [entryFor(a)], [admin.entry]);
    await waitUntil(async () => JSON.stringify(await vectorOf(late, 't')) === JSON.stringify(await vectorOf(a, 't')), { what: 'the late joiner holds what a holds' });
    expect(late.lines.some((l) => l.msg === 'envelope refused' && String(l.feed).startsWith(r.id))).toBe(false);
    await waitUntil(() => allEqual([a, b, late], 't'), { what: 'one digest on a, b and the late joiner' });
    for (const n of [a, b, late]) {
      expect((await getDoc(n, 't')).body, n.name).toEqual({ t: 'kept ', m: { a: 1 } });
      expect((await n.daemon.verify()).ok, n.name).toBe(true);
    }
  });

  it('an app that failed over from the revoked node to an honest one during a partition: every node ends on one digest', async () => {
    const admin = await authority();
    const fast = { reconnectMax: '1s' };
    const h = await testNode('h', fast);
    const o = await testNode('o', fast);
    const p = await testNode('p', fast);
    const r = await testNode('r', fast);
    const toH1 = await tcpProxy({ port: h.daemon.peerAddress.port });
    const toH2 = await tcpProxy({ port: h.daemon.peerAddress.port });
    await writeGrants(r, [await grantFor(admin, r)]);
    // Honest nodes pin each other and trust the authority; r is admitted by grant. p reaches h through a proxy.
    await setPeers(h, [entryFor(o, { dial: false }), entryFor(p, { dial: false })], [admin.entry]);
    await setPeers(o, [entryFor(h)], [admin.entry]);
    await setPeers(p, [{ ...entryFor(h), url: toH2.url }], [admin.entry]);
    await setPeers(r, [{ ...entryFor(h), url: toH1.url }, entryFor(p)]);
    await waitUntil(async () => (await connected(o, h)) && (await connected(p, h)) && (await connected(r, h)) && (await connected(r, p)), { what: 'all links up' });

    const app = appDoc();
    await postUpdate(r, 'd', app.edit((d) => d.getText('t').insert(0, 'one ')));
    const rFeed = feedOf(r);
    await waitUntil(async () => (await vectorOf(h, 'd'))[rFeed] === 1 && (await vectorOf(o, 'd'))[rFeed] === 1 && (await vectorOf(p, 'd'))[rFeed] === 1, { what: 'everyone has the first edit' });

    // Partition {r, p} | {h, o}; the app keeps writing on r.
    toH1.cut();
    toH2.cut();
    await waitUntil(async () => !(await connected(p, h)) && !(await connected(r, h)), { what: 'partitioned' });
    await postUpdate(r, 'd', app.edit((d) => d.getText('t').insert(4, 'two ')));
    await postUpdate(r, 'd', app.edit((d) => d.getText('t').insert(8, 'three ')));
    await waitUntil(async () => (await vectorOf(p, 'd'))[rFeed] === 3, { what: 'p holds r\'s partition-time edits' });

    // The app fails over to h with its whole state, and goes on writing there; r is revoked with h's view as cutoff.
    expect((await postUpdate(h, 'd', Y.encodeStateAsUpdate(app.doc))).status).toBe(200);
    expect((await postUpdate(h, 'd', app.edit((d) => d.getText('t').insert(14, 'four')))).status).toBe(200);
    const expected = app.doc.getText('t').toString();
    expect(expected).toBe('one two three four');
    await writeGrants(h, [], [await revocationOf(admin, r, { d: { [rFeed]: 1 } })]);
    await waitUntil(() => o.lines.some((l) => l.msg === 'revocations changed: documents rebuilt'), { what: 'the revocation reached o' });

    toH1.heal();
    toH2.heal();
    const hFeed = feedOf(h);
    await waitUntil(async () => (await connected(p, h)) && p.lines.some((l) => l.msg === 'revocations changed: documents rebuilt'), { what: 'p back with h, and rebuilt under the revocation' });
    await waitUntil(async () => (await vectorOf(p, 'd'))[hFeed] === (await vectorOf(h, 'd'))[hFeed] && (await vectorOf(o, 'd'))[hFeed] === (await vectorOf(h, 'd'))[hFeed], { what: 'p and o hold h\'s envelopes' });
    await waitUntil(() => allEqual([h, o, p], 'd'), { what: 'one digest on h, o and p' });
    for (const n of [h, o, p]) {
      expect((await getDoc(n, 'd')).body.t, n.name).toBe(expected);
      expect.soft((await vectorOf(n, 'd'))[rFeed], `${n.name}: r's feed counted up to the cutoff only`).toBe(1);
      expect.soft(await n.daemon.verify(), `${n.name}: store consistent`).toMatchObject({ ok: true });
    }
    expect(await connected(r, h)).toBe(false);
    expect(await connected(r, p)).toBe(false);
  });

  it('honest edits blocked on dropped content are kept and shown in /v1/status: pending and an alarm', async () => {
    const a = await testNode('a');
    const r = await testNode('r');
    await setPeers(a, [entryFor(r, { dial: false })]);
    await setPeers(r, [entryFor(a)]);
    await waitUntil(() => connected(r, a), { what: 'r connected' });
    const app = appDoc();
    await postUpdate(r, 'p', app.edit((d) => d.getText('t').insert(0, 'base ')));
    await postUpdate(r, 'p', app.edit((d) => d.getText('t').insert(5, 'dropped')));
    const rFeed = feedOf(r);
    await waitUntil(async () => (await vectorOf(a, 'p'))[rFeed] === 2);
    const honest = appDoc();
    Y.applyUpdate(honest.doc, Y.encodeStateAsUpdate(app.doc));
    await postUpdate(a, 'p', honest.edit((d) => d.getText('t').insert(12, ' and built on')));
    await setPeers(a, [{ ...entryFor(r, { dial: false }), revoked: { at: new Date().toISOString(), cutoff: { [docHash('p')]: { [rFeed]: 1 } } } }]);
    await waitUntil(async () => (await vectorOf(a, 'p'))[rFeed] === 1, { what: 'a rebuilt' });
    expect((await getDoc(a, 'p')).body.t).toBe('base ');
    // Never evicted: a's own envelope is still held and counted.
    expect((await vectorOf(a, 'p'))[feedOf(a)]).toBe(1);
    const s = await status(a);
    expect(s.pending as number).toBeGreaterThan(0);
    expect((s.alarms as { doc: string }[]).some((al) => al.doc === 'p'), 'an alarm naming the blocked clients of p').toBe(true);
  });

  it('local writes racing rebuilds: no acknowledged write is lost and the store stays consistent', async () => {
    const a = await testNode('a');
    const r = await testNode('r');
    await setPeers(a, [entryFor(r, { dial: false })]);
    await setPeers(r, [entryFor(a)]);
    await waitUntil(() => connected(r, a), { what: 'r connected' });
    const rFeed = feedOf(r);
    for (let i = 1; i <= 3; i++) await postUpdate(r, 'race', appDoc().edit((d) => d.getMap('r').set(`s${i}`, i)));
    await waitUntil(async () => (await vectorOf(a, 'race'))[rFeed] === 3, { what: 'a holds r\'s three envelopes' });
    // Local apps keep writing while the revocation is put in force and lifted, several times.
    let stop = false;
    let acknowledged = 0;
    const writers = Array.from({ length: 8 }, (_, w) => (async () => {
      for (let i = 0; !stop; i++) {
        const res = await postUpdate(a, 'race', appDoc().edit((d) => d.getMap('a').set(`w${w}-${i}`, i)));
        if (res.status !== 200) throw new Error(`write refused: ${res.status} ${JSON.stringify(res.body)}`);
        acknowledged++;
      }
    })());
    const plain = entryFor(r, { dial: false });
    const revoked = { ...plain, revoked: { at: new Date().toISOString(), cutoff: { [docHash('race')]: { [rFeed]: 1 } } } };
    const rebuilds = () => a.lines.filter((l) => l.msg === 'revocations changed: documents rebuilt').length;
    for (let k = 0; k < 10; k++) {
      const at = acknowledged;
      await waitUntil(() => acknowledged >= at + 10, { what: 'writes in flight' });
      const before = rebuilds();
      await setPeers(a, [k % 2 === 0 ? revoked : plain]);
      await waitUntil(() => rebuilds() > before, { what: `rebuild ${k + 1}` });
    }
    const at = acknowledged;
    await waitUntil(() => acknowledged >= at + 10, { what: 'writes after the last rebuild' });
    stop = true;
    await Promise.all(writers);
    // The last change lifted the revocation: r's three envelopes are back.
    expect.soft((await a.daemon.verify()).problems, 'verify').toEqual([]);
    expect.soft((await vectorOf(a, 'race'))[rFeed], 'r\'s feed in the vector').toBe(3);
    const body = (await getDoc(a, 'race')).body as { r: Record<string, number>; a: Record<string, number> };
    expect.soft(body.r).toEqual({ s1: 1, s2: 2, s3: 3 });
    expect.soft(Object.keys(body.a).length, 'acknowledged writes in the document').toBe(acknowledged);
  });
});
