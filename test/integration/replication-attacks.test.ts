/**
 * A raw peer, listed by the node under test and holding the real session
 * keys, offers envelopes no honest node would (DESIGN.md §4): bytes altered
 * in relay, an envelope moved to another document, validly signed garbage,
 * claims that lie about the bytes, a second envelope for a held (feed, seq),
 * another origin's feed id, and envelopes refused by policy. Each is refused
 * for its reason, the node stays up, and its session with an honest node is
 * untouched.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { generateKeyPair, type KeyPair } from '../../src/identity/keys.js';
import type { Session } from '../../src/net/session.js';
import { Close } from '../../src/protocol/close-codes.js';
import type { DocName, NodeId } from '../../src/types.js';
import { entryFor, peerState, setPeers, testNode, type TestNode } from '../helpers/cluster.js';
import { appDoc, getDoc, postUpdate } from '../helpers/docs.js';
import { RawSyncPeer, envelope, newFeed, rawEntry, yUpdate } from '../helpers/raw-peer.js';
import { waitUntil } from '../helpers/wait.js';

interface Arena {
  readonly target: TestNode;
  readonly honest: TestNode;
  /** The honest node's session on the target, captured before the attack. */
  readonly kept: Session;
  /** The raw peer's identity (listed: read and write everything). */
  readonly mallory: KeyPair;
  /** Origins the target lists with write on everything; they never connect. */
  readonly o1: KeyPair;
  readonly o2: KeyPair;
  readonly peer: RawSyncPeer;
  /** Sends a valid envelope of mallory's own on a marker doc and waits until the target holds it: everything sent before was handled. */
  settle(): Promise<void>;
  /** Log lines of envelopes the target refused. */
  refusals(): Record<string, unknown>[];
}

async function arena(extra: Record<string, unknown>[] = [], malloryPerms?: { read?: string[]; write?: string[] }): Promise<Arena> {
  const target = await testNode('target');
  const honest = await testNode('honest');
  const [mallory, o1, o2] = await Promise.all([generateKeyPair(), generateKeyPair(), generateKeyPair()]);
  await setPeers(honest, [entryFor(target, { dial: false })]);
  await setPeers(target, [
    entryFor(honest),
    rawEntry('mallory', mallory, malloryPerms),
    rawEntry('o1', o1, { read: [], write: ['**'] }),
    rawEntry('o2', o2, { read: [], write: ['**'] }),
    ...extra,
  ]);
  await waitUntil(async () => (await peerState(target, honest)) === 'connected' && (await peerState(honest, target)) === 'connected', { what: 'honest link' });
  const kept = target.daemon.peerManager.session(honest.id as NodeId)!;
  const peer = await RawSyncPeer.dial(target.url, mallory, target);
  const markerFeed = newFeed();
  let markerSeq = 0;
  const marker = 'marker/doc' as DocName;
  return {
    target,
    honest,
    kept,
    mallory,
    o1,
    o2,
    peer,
    async settle() {
      markerSeq++;
      const seq = markerSeq;
      peer.offer(envelope(mallory, { doc: marker, feed: markerFeed, seq, update: yUpdate(1000 + seq, (d) => d.getMap('m').set(`k${seq}`, seq)) }));
      await waitUntil(async () => (await target.daemon.docs.vector(marker))[`${mallory.id}:${markerFeed}`] === seq, { what: `marker ${seq} applied` });
    },
    refusals: () => target.lines.filter((l) => l.msg === 'envelope refused'),
  };
}

/** The target still serves, still holds its honest session, and a write on the honest node still reaches it. */
async function stillUp(x: Arena): Promise<void> {
  expect((await fetch(`${x.target.api}/healthz`)).status).toBe(200);
  expect(x.target.daemon.peerManager.session(x.honest.id as NodeId)).toBe(x.kept);
  expect(x.kept.closed).toBe(false);
  const tag = randomBytes(4).toString('hex');
  await postUpdate(x.honest, 'honest/doc', appDoc().edit((d) => d.getMap('m').set(tag, true)));
  await waitUntil(async () => ((await getDoc(x.target, 'honest/doc')).body.m as Record<string, unknown> | undefined)?.[tag] === true, { what: 'honest write reached the target' });
  expect((await x.target.daemon.verify()).ok).toBe(true);
}

const text = (clientID: number, s: string, root = 't') => yUpdate(clientID, (d) => d.getText(root).insert(0, s));

/** Replaces the claims of a compact JWS, keeping its header and signature. */
function withClaims(token: string, edit: (c: Record<string, unknown>) => void): string {
  const [h, p, s] = token.split('.');
  const c = JSON.parse(Buffer.from(p!, 'base64url').toString('utf8')) as Record<string, unknown>;
  edit(c);
  return `${h}.${Buffer.from(JSON.stringify(c)).toString('base64url')}.${s}`;
}

describe('raw-peer attacks on replication', () => {
  it('a relay that alters the bytes is refused by hash; the unaltered envelope is then accepted', async () => {
    const x = await arena();
    const doc = 'x/1' as DocName;
    const feed = newFeed();
    const honestEnv = envelope(x.o1, { doc, feed, seq: 1, update: text(11, 'hello') });
    const altered = Buffer.from(honestEnv.update);
    const at = altered.indexOf('hello');
    altered[at] = 'j'.charCodeAt(0); // still a valid update, now saying "jello"
    expect(() => Y.decodeUpdate(altered)).not.toThrow();
    x.peer.offer({ token: honestEnv.token, update: altered });
    await x.settle();
    expect(x.refusals().some((l) => l.reason === 'forgery' && /^h does not match/.test(String(l.detail)))).toBe(true);
    expect((await x.target.daemon.docs.vector(doc))[`${x.o1.id}:${feed}`]).toBeUndefined();

    x.peer.offer(honestEnv);
    await waitUntil(async () => (await getDoc(x.target, doc)).body.t === 'hello', { what: 'the genuine envelope applied' });
    expect(x.peer.isOpen).toBe(true);
    await stillUp(x);
  });

  it('an envelope replayed into another document is refused', async () => {
    const x = await arena();
    const feed = newFeed();
    const env = envelope(x.o1, { doc: 'x/1', feed, seq: 1, update: text(12, 'for x/1 only') });
    x.peer.offer(env);
    await waitUntil(async () => (await getDoc(x.target, 'x/1')).body.t === 'for x/1 only');
    // The same token and bytes, its doc claim pointed at x/2: the origin never signed that.
    x.peer.offer({ token: withClaims(env.token, (c) => (c.doc = 'x/2')), update: env.update });
    await x.settle();
    expect(x.refusals().some((l) => l.doc === 'x/2' && l.reason === 'forgery' && /signature/.test(String(l.detail)))).toBe(true);
    expect(x.target.daemon.docs.has('x/2' as DocName)).toBe(false);
    expect((await getDoc(x.target, 'x/2')).status).toBe(404);
    // Offered again as it was signed, it is a duplicate of x/1's, nothing more.
    x.peer.offer(env);
    await x.settle();
    expect(await x.target.daemon.docs.vector('x/1' as DocName)).toEqual({ [`${x.o1.id}:${feed}`]: 1 });
    await stillUp(x);
  });

  it('validly signed garbage Yjs bytes are refused, and the node stays up', async () => {
    const x = await arena();
    const doc = 'x/garbage' as DocName;
    const valid = text(13, 'valid');
    const garbage: Uint8Array[] = [
      new Uint8Array(randomBytes(256)),
      Y.encodeStateAsUpdateV2((() => {
        const d = new Y.Doc();
        d.getText('t').insert(0, 'v2 bytes');
        return d;
      })()),
      valid.subarray(0, valid.byteLength - 3), // truncated
      Buffer.concat([valid, Buffer.from([0])]), // a byte left over
      new Uint8Array([1, 1, 13, 0, 0xff, 0, 0]), // an unknown struct kind
    ];
    garbage.forEach((update, i) => x.peer.offer(envelope(x.o1, { doc, feed: newFeed(), seq: 1, update, clients: [[13, 0, 5 + i]] })));
    await x.settle();
    const refused = x.refusals().filter((l) => l.doc === doc);
    expect(refused).toHaveLength(garbage.length);
    for (const l of refused) expect(l.reason).toBe('forgery');
    expect(x.target.daemon.docs.has(doc)).toBe(false);
    expect(x.peer.isOpen).toBe(true);
    await stillUp(x);
  });

  it('an envelope whose claims do not match its bytes is refused', async () => {
    const x = await arena();
    const doc = 'x/claims' as DocName;
    const update = text(14, 'abcde'); // [14, 0, 5)
    const lies = [
      [[14, 0, 3]], // fewer clocks than it carries
      [[14, 0, 9]], // more
      [[15, 0, 5]], // another client id
      [], // nothing
      [[14, 0, 5], [16, 0, 1]], // an extra client
    ] as [number, number, number][][];
    for (const clients of lies) x.peer.offer(envelope(x.o1, { doc, feed: newFeed(), seq: 1, update, clients }));
    await x.settle();
    const refused = x.refusals().filter((l) => l.doc === doc);
    expect(refused).toHaveLength(lies.length);
    for (const l of refused) expect(l).toMatchObject({ reason: 'forgery', detail: 'clients claim does not match the structs' });
    expect(x.target.daemon.docs.has(doc)).toBe(false);
    // The honest claim for the same bytes goes through.
    x.peer.offer(envelope(x.o1, { doc, feed: newFeed(), seq: 1, update }));
    await waitUntil(async () => (await getDoc(x.target, doc)).body.t === 'abcde');
    await stillUp(x);
  });

  it('a second, different envelope for a (feed, seq) already held is refused and reported', async () => {
    const x = await arena();
    const doc = 'x/conflict' as DocName;
    const feed = newFeed();
    x.peer.offer(envelope(x.o1, { doc, feed, seq: 1, update: text(17, 'first') }));
    await waitUntil(async () => (await getDoc(x.target, doc)).body.t === 'first');
    x.peer.offer(envelope(x.o1, { doc, feed, seq: 1, update: text(18, 'second', 'u') }));
    await x.settle();
    expect(x.refusals().some((l) => l.doc === doc && l.reason === 'conflict')).toBe(true);
    const report = x.target.lines.find((l) => String(l.msg).startsWith('conflicting envelope'));
    expect(report).toMatchObject({ doc, feed: `${x.o1.id}:${feed}`, seq: 1, peer: x.mallory.id });
    expect((await getDoc(x.target, doc)).body).toEqual({ t: 'first' });
    const status = (await (await fetch(`${x.target.api}/v1/status`, { headers: { authorization: `Bearer ${await x.target.token()}` } })).json()) as { alarms: { doc: string; kind: string; origins: string[] }[] };
    expect(status.alarms).toContainEqual(expect.objectContaining({ doc, origins: [x.o1.id] }));
    // The feed does not stall: its next seq is accepted.
    x.peer.offer(envelope(x.o1, { doc, feed, seq: 2, update: text(19, 'next', 'v') }));
    await waitUntil(async () => (await getDoc(x.target, doc)).body.v === 'next');
    expect(await x.target.daemon.docs.vector(doc)).toEqual({ [`${x.o1.id}:${feed}`]: 2 });
    await stillUp(x);
  });

  it('a different envelope for a (feed, seq) waiting behind a gap is refused and reported with its peer; the first one stays', async () => {
    const x = await arena();
    const doc = 'x/held-conflict' as DocName;
    const feed = newFeed();
    const base = new Y.Doc();
    base.clientID = 60;
    const steps: Uint8Array[] = [];
    for (const s of ['a', 'b']) {
      const before = Y.encodeStateVector(base);
      base.getText('t').insert(base.getText('t').length, s);
      steps.push(Y.encodeStateAsUpdate(base, before));
    }
    x.peer.offer(envelope(x.o1, { doc, feed, seq: 2, update: steps[1]! }));
    x.peer.offer(envelope(x.o1, { doc, feed, seq: 2, update: text(61, 'other', 'u') }));
    await x.settle();
    expect(x.refusals().some((l) => l.doc === doc && l.reason === 'conflict')).toBe(true);
    expect(x.target.lines.find((l) => String(l.msg).startsWith('conflicting envelope'))).toMatchObject({ doc, feed: `${x.o1.id}:${feed}`, seq: 2, peer: x.mallory.id });
    const status = (await (await fetch(`${x.target.api}/v1/status`, { headers: { authorization: `Bearer ${await x.target.token()}` } })).json()) as { alarms: { doc: string; kind: string; origins: string[]; peer: string | null }[] };
    expect(status.alarms).toContainEqual(expect.objectContaining({ doc, kind: 'conflicting_envelope', origins: [x.o1.id], peer: x.mallory.id }));
    x.peer.offer(envelope(x.o1, { doc, feed, seq: 1, update: steps[0]! }));
    await waitUntil(async () => (await getDoc(x.target, doc)).body.t === 'ab', { what: 'the first waiting envelope applied once the gap filled' });
    expect((await getDoc(x.target, doc)).body.u).toBeUndefined();
    await stillUp(x);
  });

  it('a feed id reused by another iss is a separate feed, not a conflict', async () => {
    const x = await arena();
    const doc = 'x/feeds' as DocName;
    const feed = newFeed();
    x.peer.offer(envelope(x.o1, { doc, feed, seq: 1, update: text(21, 'from o1', 'a') }));
    x.peer.offer(envelope(x.o2, { doc, feed, seq: 1, update: text(22, 'from o2', 'b') }));
    await waitUntil(async () => (await getDoc(x.target, doc)).body.b === 'from o2');
    expect((await getDoc(x.target, doc)).body).toEqual({ a: 'from o1', b: 'from o2' });
    expect(await x.target.daemon.docs.vector(doc)).toEqual({ [`${x.o1.id}:${feed}`]: 1, [`${x.o2.id}:${feed}`]: 1 });
    expect(x.refusals()).toEqual([]);
    expect(x.target.lines.some((l) => String(l.msg).startsWith('conflicting envelope'))).toBe(false);
    // Nor can one origin squat the other's feed: o2 signing as o1 (iss o1, o2's key) is a bad signature.
    x.peer.offer(envelope(x.o2, { doc, feed, seq: 2, iss: x.o1.id, update: text(23, 'squat', 'c') }));
    await x.settle();
    expect(x.refusals().some((l) => l.feed === `${x.o1.id}:${feed}` && l.seq === 2 && l.reason === 'forgery')).toBe(true);
    expect((await getDoc(x.target, doc)).body.c).toBeUndefined();
    await stillUp(x);
  });

  it('an honest relay that keeps offering envelopes refused by policy stays connected', async () => {
    const outsider = await generateKeyPair(); // not listed: "origin not trusted here"
    const readOnly = await generateKeyPair(); // listed, may write nothing
    const x = await arena([rawEntry('readonly', readOnly, { read: ['**'], write: [] })], { read: ['x/**', 'marker/**'], write: ['x/**', 'marker/**'] });
    const n = 40; // well past the forgeries tolerated from one session
    for (let i = 1; i <= n; i++) {
      x.peer.offer(envelope(outsider, { doc: 'x/policy', feed: newFeed(), seq: 1, update: text(30 + i, `o${i}`) }));
      x.peer.offer(envelope(readOnly, { doc: 'x/policy', feed: newFeed(), seq: 1, update: text(100 + i, `r${i}`) }));
      x.peer.offer(envelope(x.o1, { doc: 'y/elsewhere', feed: newFeed(), seq: 1, update: text(200 + i, `e${i}`) })); // mallory may not exchange y/**
    }
    await x.settle();
    const refused = x.refusals();
    expect(refused.filter((l) => l.reason === 'not_wanted')).toHaveLength(2 * n);
    expect(refused.filter((l) => l.reason === 'not_exchangeable')).toHaveLength(n);
    expect(refused.filter((l) => l.reason === 'forgery')).toEqual([]);
    // Each was answered "not wanted" (the answers may still be on their way when the marker lands); none cost the relay its session.
    const notWanted = () => x.peer.received.flatMap((m) => (m.type === 'notWanted' ? m.items : []));
    await waitUntil(() => notWanted().length >= 3 * n, { what: 'every refusal answered "not wanted"' });
    expect(notWanted().length).toBe(3 * n);
    expect(x.peer.isOpen).toBe(true);
    expect(x.target.lines.some((l) => l.msg === 'closing session')).toBe(false);
    expect(x.target.daemon.docs.has('x/policy' as DocName) || x.target.daemon.docs.has('y/elsewhere' as DocName)).toBe(false);
    await stillUp(x);
  });

  it('forgery counts toward disconnecting the sender, and only that session', async () => {
    const x = await arena();
    for (let i = 0; i < 20; i++) x.peer.offer(envelope(x.o1, { doc: 'x/forged', feed: newFeed(), seq: 1, update: text(40 + i, 'forged'), key: x.o2 }));
    const closed = await x.peer.closed;
    expect(closed.code).toBe(Close.forgery.code);
    expect(x.target.daemon.docs.has('x/forged' as DocName)).toBe(false);
    await stillUp(x);
  });

  it('envelopes that arrive ahead of a gap in their feed are held, then applied in order once it fills', async () => {
    const x = await arena();
    const doc = 'x/gap' as DocName;
    const feed = newFeed();
    const base = new Y.Doc();
    base.clientID = 50;
    const steps: Uint8Array[] = [];
    for (const s of ['a', 'b', 'c']) {
      const before = Y.encodeStateVector(base);
      base.getText('t').insert(base.getText('t').length, s);
      steps.push(Y.encodeStateAsUpdate(base, before));
    }
    x.peer.offer(envelope(x.o1, { doc, feed, seq: 3, update: steps[2]! }));
    x.peer.offer(envelope(x.o1, { doc, feed, seq: 2, update: steps[1]! }));
    await x.settle();
    expect((await x.target.daemon.docs.vector(doc))[`${x.o1.id}:${feed}`]).toBeUndefined();
    x.peer.offer(envelope(x.o1, { doc, feed, seq: 1, update: steps[0]! }));
    await waitUntil(async () => (await getDoc(x.target, doc)).body.t === 'abc', { what: 'the held envelopes applied once the gap filled' });
    expect(await x.target.daemon.docs.vector(doc)).toEqual({ [`${x.o1.id}:${feed}`]: 3 });
    await stillUp(x);
  });
});
