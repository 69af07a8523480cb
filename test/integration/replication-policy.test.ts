/**
 * Who may read and who may write (DESIGN.md §2, §4, §5): a narrowed `read`
 * stops the next envelope; an author without `write` is refused at every
 * node, even through an authorized relay, which stays connected; a peer that
 * may read `a/**` never receives, or learns the name of, `b/x`.
 */
import { describe, expect, it } from 'vitest';
import { generateKeyPair } from '../../src/identity/keys.js';
import type { Session } from '../../src/net/session.js';
import type { SessionMessage } from '../../src/protocol/messages.js';
import { Space } from '../../src/store/store.js';
import { withStore } from '../helpers/node.js';
import type { DocName, NodeId } from '../../src/types.js';
import { entryFor, peerState, setPeers, testNode, type TestNode } from '../helpers/cluster.js';
import { appDoc, getDoc, postUpdate } from '../helpers/docs.js';
import { RawSyncPeer, rawEntry } from '../helpers/raw-peer.js';
import { waitUntil } from '../helpers/wait.js';

/** Every message `node` receives on its sessions from now on, with the sending peer. */
function inbox(node: TestNode): { peer: string; message: SessionMessage }[] {
  const out: { peer: string; message: SessionMessage }[] = [];
  node.daemon.peerManager.on('session', (s: Session) => s.on('message', (message) => out.push({ peer: s.peer, message })));
  return out;
}

const claims = (token: string) => JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as { iss: string; doc: string; feed: string; seq: number };

/** Everything a list of messages names: announced docs, wanted docs, envelope claims, refused docs. */
function namesIn(messages: SessionMessage[]): Set<string> {
  const names = new Set<string>();
  for (const m of messages) {
    if (m.type === 'announce') for (const [n] of m.docs) names.add(n);
    if (m.type === 'want') for (const n of Object.keys(m.docs)) names.add(n);
    if (m.type === 'notWanted') for (const [n] of m.items) names.add(n);
    if (m.type === 'envelopes') for (const i of m.items) names.add(claims(i.token).doc);
  }
  return names;
}

const connected = async (x: TestNode, y: TestNode) => (await peerState(x, y)) === 'connected' && (await peerState(y, x)) === 'connected';

describe('replication policy', () => {
  it('a narrowed read in the peers file stops the next envelope for documents outside it', async () => {
    const a = await testNode('a');
    const b = await testNode('b');
    await setPeers(b, [entryFor(a, { dial: false })]);
    await setPeers(a, [entryFor(b)]);
    await waitUntil(() => connected(a, b), { what: 'connected' });
    const session = a.daemon.peerManager.session(b.id as NodeId)!;

    const appA = appDoc();
    const appB = appDoc();
    await postUpdate(a, 'a/1', appA.edit((d) => d.getArray('x').push(['a1'])));
    await postUpdate(a, 'b/1', appB.edit((d) => d.getArray('x').push(['b1'])));
    await waitUntil(async () => (await getDoc(b, 'a/1')).status === 200 && (await getDoc(b, 'b/1')).status === 200, { what: 'b has both docs' });

    await setPeers(a, [entryFor(b, { read: ['a/**'] })]);
    // b/1 first, then a/1: if the b/1 envelope went out it would arrive (and be applied) before a/1's.
    await postUpdate(a, 'b/1', appB.edit((d) => d.getArray('x').push(['b2'])));
    await postUpdate(a, 'a/1', appA.edit((d) => d.getArray('x').push(['a2'])));
    await waitUntil(async () => JSON.stringify((await getDoc(b, 'a/1')).body.x) === '["a1","a2"]', { what: 'b has the new a/1 write' });
    expect((await getDoc(b, 'b/1')).body.x).toEqual(['b1']);
    expect((await b.daemon.docs.vector('b/1' as DocName))[a.daemon.docs.ownFeed]).toBe(1);
    // The narrowing did not cost the session.
    expect(a.daemon.peerManager.session(b.id as NodeId)).toBe(session);
    expect(session.closed).toBe(false);
  });

  it('an author without write is refused at every node, even relayed by a peer that may write; the relay stays connected', async () => {
    const a = await testNode('a');
    const b = await testNode('b');
    const c = await testNode('c');
    const d = await testNode('d');
    const inB = inbox(b);
    // a–b–c and a–b–d; a never meets c or d. c lists a without write; d does not list a at all.
    await setPeers(a, [entryFor(b, { dial: false })]);
    await setPeers(c, [entryFor(b, { dial: false }), entryFor(a, { dial: false, read: [], write: [] })]);
    await setPeers(d, [entryFor(b, { dial: false })]);
    await setPeers(b, [entryFor(a), entryFor(c), entryFor(d)]);
    await waitUntil(async () => (await connected(b, a)) && (await connected(b, c)) && (await connected(b, d)), { what: 'b linked to a, c, d' });
    const cSession = c.daemon.peerManager.session(b.id as NodeId)!;
    const dSession = d.daemon.peerManager.session(b.id as NodeId)!;

    const doc = 'w/doc' as DocName;
    await postUpdate(a, doc, appDoc().edit((x) => x.getText('byA').insert(0, 'written by a')));
    await waitUntil(async () => (await getDoc(b, doc)).body.byA === 'written by a', { what: 'b accepted a (it may write)' });
    // b writes after holding a's envelope, to another root: when c and d hold b's, they have judged a's.
    await postUpdate(b, doc, appDoc().edit((x) => x.getMap('byB').set('k', 'v')));
    for (const node of [c, d]) {
      await waitUntil(async () => (await getDoc(node, doc)).status === 200 && (await getDoc(node, doc)).body.byB !== undefined, { what: `${node.name} has b's write` });
      expect((await getDoc(node, doc)).body.byA).toBeUndefined();
      const vector = await node.daemon.docs.vector(doc);
      expect(Object.keys(vector).some((f) => f.startsWith(`${a.id}:`))).toBe(false);
      expect(node.lines.some((l) => l.msg === 'envelope refused' && l.reason === 'not_wanted' && String(l.feed).startsWith(`${a.id}:`))).toBe(true);
      expect((await node.daemon.verify()).ok).toBe(true);
    }
    // The relay was told "not wanted", not cut off: same sessions, still open, and more writes flow.
    expect(inB.some((r) => r.peer === c.id && r.message.type === 'notWanted')).toBe(true);
    await postUpdate(a, doc, appDoc().edit((x) => x.getText('byA2').insert(0, 'more from a')));
    await postUpdate(b, doc, appDoc().edit((x) => x.getMap('byB2').set('k', 'v2')));
    await waitUntil(async () => (await getDoc(c, doc)).body.byB2 !== undefined && (await getDoc(d, doc)).body.byB2 !== undefined, { what: "b's second write reached c and d" });
    expect((await getDoc(c, doc)).body.byA2).toBeUndefined();
    expect(c.daemon.peerManager.session(b.id as NodeId)).toBe(cSession);
    expect(d.daemon.peerManager.session(b.id as NodeId)).toBe(dSession);
    expect(cSession.closed || dSession.closed).toBe(false);
    expect(c.lines.some((l) => l.msg === 'closing session')).toBe(false);
  });

  it('after a peers-file change grants the author write, its refused feed comes in without a reconnect', async () => {
    const a = await testNode('a');
    const b = await testNode('b');
    const c = await testNode('c');
    await setPeers(a, [entryFor(b, { dial: false })]);
    await setPeers(c, [entryFor(b, { dial: false }), entryFor(a, { dial: false, read: [], write: [] })]);
    await setPeers(b, [entryFor(a), entryFor(c)]);
    await waitUntil(async () => (await connected(b, a)) && (await connected(b, c)));
    const cSession = c.daemon.peerManager.session(b.id as NodeId)!;
    const doc = 'w/late' as DocName;
    await postUpdate(a, doc, appDoc().edit((x) => x.getText('byA').insert(0, 'first')));
    await waitUntil(() => c.lines.some((l) => l.msg === 'envelope refused' && l.reason === 'not_wanted'), { what: 'c refused a' });

    // DESIGN.md §4: "Not wanted" lasts for the session; after a config change the node sends want again.
    await setPeers(c, [entryFor(b, { dial: false }), entryFor(a, { dial: false, read: [], write: ['**'] })]);
    await waitUntil(async () => (await getDoc(c, doc)).body.byA === 'first', { what: "c got a's refused envelope after the change", timeoutMs: 10_000 });
    expect(c.daemon.peerManager.session(b.id as NodeId)).toBe(cSession);
  });

  it('a refused feed is logged once per message with its count, not once per envelope', async () => {
    const a = await testNode('a');
    const c = await testNode('c');
    const doc = 'w/many' as DocName;
    const app = appDoc();
    for (let i = 0; i < 40; i++) expect((await postUpdate(a, doc, app.edit((x) => x.getArray('x').push([i])))).status).toBe(200);
    // c reads from a but does not let it write: all 40 of a's envelopes are refused when c catches up.
    await setPeers(c, [entryFor(a, { dial: false, read: ['**'], write: [] })]);
    await setPeers(a, [entryFor(c)]);
    const refused = () => c.lines.filter((l) => l.msg === 'envelope refused' && l.doc === doc);
    await waitUntil(() => refused().reduce((n, l) => n + Number(l.count), 0) >= 40, { what: 'c refused all of a\'s envelopes' });
    expect(refused().length).toBeLessThan(40);
    expect(refused()[0]).toMatchObject({ reason: 'not_wanted', seq: 1, feed: expect.stringMatching(new RegExp(`^${a.id}:`)) });
  });

  it('a feed refused once is not sent whole again when the sender announces again', async () => {
    const a = await testNode('a');
    const c = await testNode('c');
    const doc = 'w/refused' as DocName;
    const app = appDoc();
    for (let i = 0; i < 20; i++) expect((await postUpdate(a, doc, app.edit((x) => x.getArray('x').push([i])))).status).toBe(200);
    await setPeers(c, [entryFor(a, { dial: false, read: ['**'], write: ['ok/**'] })]);
    const atA = inbox(a);
    const atC = inbox(c);
    await setPeers(a, [entryFor(c)]);
    const refusedCount = () => c.lines.filter((l) => l.msg === 'envelope refused' && l.doc === doc).reduce((n, l) => n + Number(l.count), 0);
    await waitUntil(() => refusedCount() >= 20, { what: "c refused a's 20 envelopes" });

    // A change to a's peers file makes it announce again (and forget c's notWanted, PROTOCOL.md §6.6).
    const mark = { a: atA.length, c: atC.length };
    await setPeers(a, [entryFor(c, { write: ['back/**'] })]);
    await waitUntil(() => atC.slice(mark.c).some((m) => m.message.type === 'announce'), { what: 'a announced again' });
    // Barriers: c handles a's messages in order, so once it has ok/1 it has answered the announce; a has what c sent before back/1.
    await postUpdate(a, 'ok/1', appDoc().edit((x) => x.getArray('x').push(['ok'])));
    await waitUntil(async () => (await getDoc(c, 'ok/1')).status === 200, { what: 'c has ok/1' });
    await postUpdate(c, 'back/1', appDoc().edit((x) => x.getArray('x').push(['back'])));
    await waitUntil(async () => (await getDoc(a, 'back/1')).status === 200, { what: 'a has back/1' });
    const wanted = atA.slice(mark.a).filter((m) => m.message.type === 'want' && doc in m.message.docs);
    expect(wanted).toEqual([]);
    expect(refusedCount()).toBe(20);

    // A new envelope of the refused feed is offered (a forgot the notWanted), refused once, and counted as refused from then on.
    await postUpdate(a, doc, app.edit((x) => x.getArray('x').push([20])));
    await waitUntil(() => refusedCount() === 21, { what: 'c refused the 21st' });
    const again = atC.length;
    await setPeers(a, [entryFor(c, { write: ['back/**', 'more/**'] })]);
    await waitUntil(() => atC.slice(again).some((m) => m.message.type === 'announce'), { what: 'a announced a third time' });
    await postUpdate(a, 'ok/2', appDoc().edit((x) => x.getArray('x').push(['ok'])));
    await waitUntil(async () => (await getDoc(c, 'ok/2')).status === 200, { what: 'c has ok/2' });
    await postUpdate(c, 'back/2', appDoc().edit((x) => x.getArray('x').push(['back'])));
    await waitUntil(async () => (await getDoc(a, 'back/2')).status === 200, { what: 'a has back/2' });
    expect(atA.slice(mark.a).filter((m) => m.message.type === 'want' && doc in m.message.docs)).toEqual([]);
    expect(refusedCount()).toBe(21);
    expect(c.daemon.docs.has(doc)).toBe(false);
  });

  it('a peer that may read a/** never receives b/x, nor learns its name', async () => {
    const a = await testNode('a');
    const b = await testNode('b');
    const inB = inbox(b);
    const raw = await generateKeyPair();
    const appA = appDoc();
    const appX = appDoc();
    await postUpdate(a, 'a/1', appA.edit((d) => d.getArray('x').push(['before'])));
    await postUpdate(a, 'b/x', appX.edit((d) => d.getArray('x').push(['secret'])));

    await setPeers(b, [entryFor(a, { dial: false })]);
    await setPeers(a, [entryFor(b, { read: ['a/**'], write: ['a/**'] }), rawEntry('raw', raw, { read: ['a/**'], write: [] })]);
    await waitUntil(() => connected(a, b), { what: 'connected' });
    await postUpdate(a, 'b/x', appX.edit((d) => d.getArray('x').push(['secret2'])));
    await postUpdate(a, 'a/1', appA.edit((d) => d.getArray('x').push(['after'])));
    await waitUntil(async () => JSON.stringify((await getDoc(b, 'a/1')).body.x) === '["before","after"]', { what: 'b has a/1' });

    expect(b.daemon.docs.names()).toEqual(['a/1']);
    expect((await getDoc(b, 'b/x')).status).toBe(404);
    const list = (await (await fetch(`${b.api}/v1/docs`, { headers: { authorization: `Bearer ${await b.token()}` } })).json()) as { docs: { name: string }[] };
    expect(list.docs.map((x) => x.name)).toEqual(['a/1']);
    expect([...namesIn(inB.map((r) => r.message))]).toEqual(['a/1']);
    expect(JSON.stringify(inB.map((r) => (r.message.type === 'envelopes' ? null : r.message)))).not.toContain('b/x');

    // A raw peer with the same read asks outright for b/x, and announces it: nothing comes back about it.
    const peer = await RawSyncPeer.dial(a.url, raw, a);
    const announce = await peer.waitFor((m) => m.type === 'announce');
    expect(announce.type === 'announce' && announce.docs.map(([n]) => n)).toEqual(['a/1']);
    peer.send({ type: 'want', docs: { 'b/x': {}, 'a/1': {} } });
    peer.send({ type: 'announce', docs: [['b/x', 'AAAAAAAAAAAAAAAAAAAAAA']] });
    await waitUntil(() => peer.envelopes().length >= 2, { what: 'the raw peer got a/1' });
    await postUpdate(a, 'b/x', appX.edit((d) => d.getArray('x').push(['secret3'])));
    await postUpdate(a, 'a/1', appA.edit((d) => d.getArray('x').push(['last'])));
    await waitUntil(() => peer.envelopes().length >= 3, { what: 'the raw peer got the last a/1 write' });
    expect([...namesIn(peer.received)]).toEqual(['a/1']);
    expect(peer.isOpen).toBe(true);

    // b's store, opened offline once it stops, holds no key that names b/x.
    await b.daemon.stop();
    await withStore(b.dir, async (store) => {
      for (const space of Object.values(Space)) {
        for await (const [key, value] of store.entries(space)) {
          expect(key).not.toContain('b/x');
          expect(Buffer.from(value).toString('latin1')).not.toContain('b/x');
        }
      }
    });
  });
});
