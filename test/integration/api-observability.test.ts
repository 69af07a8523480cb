/**
 * Contract (DESIGN.md §7): `GET /metrics` (Prometheus text, `read:**`, no
 * document names anywhere) and `GET /v1/status` (its exact shape, and alarms
 * filtered by the token's read scope).
 */
import { describe, expect, it } from 'vitest';
import { linkPair, entryFor, setPeers, testNode, type TestNode } from '../helpers/cluster.js';
import { appDoc, getDoc, postUpdate } from '../helpers/docs.js';
import { waitUntil } from '../helpers/wait.js';

async function metrics(node: TestNode, scopes = ['read:**']): Promise<{ status: number; type: string | null; text: string }> {
  const res = await fetch(`${node.api}/metrics`, { headers: { authorization: `Bearer ${await node.token(scopes)}` } });
  return { status: res.status, type: res.headers.get('content-type'), text: await res.text() };
}

/** Sample lines of a metric: labels → value. */
function samples(text: string, name: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$/.exec(line);
    if (m && m[1] === name) out.set(m[2] ?? '', Number(m[3]));
  }
  return out;
}

interface Status {
  id: string;
  name: string;
  peers: { name: string | null; id: string; url: string | null; state: string; since: string | null }[];
  docs: number;
  pending: number;
  grant: { expiresAt: string } | null;
  alarms: { doc: string; kind: string; origins: string[]; peer: string | null }[];
}

async function status(node: TestNode, scopes?: string[]): Promise<Status> {
  const res = await fetch(`${node.api}/v1/status`, { headers: { authorization: `Bearer ${await node.token(scopes)}` } });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  return (await res.json()) as Status;
}

/** Asserts the exact shape of §7's status body. */
function expectStatusShape(s: Status): void {
  expect(Object.keys(s).sort()).toEqual(['alarms', 'docs', 'grant', 'id', 'name', 'peers', 'pending']);
  expect(typeof s.id).toBe('string');
  expect(typeof s.name).toBe('string');
  expect(Number.isInteger(s.docs) && s.docs >= 0).toBe(true);
  expect(Number.isInteger(s.pending) && s.pending >= 0).toBe(true);
  if (s.grant !== null) {
    expect(Object.keys(s.grant)).toEqual(['expiresAt']);
    expect(new Date(s.grant.expiresAt).toISOString()).toBe(s.grant.expiresAt);
  }
  expect(Array.isArray(s.peers)).toBe(true);
  for (const p of s.peers) {
    expect(Object.keys(p).sort()).toEqual(['id', 'name', 'since', 'state', 'url']);
    expect(typeof p.id).toBe('string');
    expect(p.name === null || typeof p.name === 'string').toBe(true);
    expect(p.url === null || typeof p.url === 'string').toBe(true);
    expect(['connected', 'connecting', 'disconnected', 'refused', 'revoked']).toContain(p.state);
    if (p.since !== null) expect(new Date(p.since).toISOString()).toBe(p.since);
  }
  expect(Array.isArray(s.alarms)).toBe(true);
  for (const a of s.alarms) {
    expect(Object.keys(a).sort()).toEqual(['doc', 'kind', 'origins', 'peer']);
    expect(typeof a.doc).toBe('string');
    expect(typeof a.kind).toBe('string');
    expect(Array.isArray(a.origins) && a.origins.every((o) => typeof o === 'string')).toBe(true);
    expect(a.peer === null || typeof a.peer === 'string').toBe(true);
  }
}

describe('GET /metrics (DESIGN.md §7)', () => {
  const NAMES = ['zanzibar-quokka/xylophone-7731', 'marmalade.yak_42', 'Quibble/Fizzgig/ostrich-Velvet'];

  /** Two linked nodes; each of NAMES written on A and arrived on B. */
  async function writtenOnAReadOnB(): Promise<[TestNode, TestNode]> {
    const a = await testNode('a');
    const b = await testNode('b');
    await linkPair(a, b);
    for (const name of NAMES) expect((await postUpdate(a, name, appDoc().edit((d) => d.getText('t').insert(0, name)))).status).toBe(200);
    for (const name of NAMES) await waitUntil(async () => (await getDoc(b, name)).body.t === name, { what: `${name} on B` });
    return [a, b];
  }

  it('Prometheus text with sessions, handshakes, envelopes, lag per peer, documents and event-loop lag; no document name anywhere', async () => {
    const [a, b] = await writtenOnAReadOnB();

    for (const [node, other] of [[a, b], [b, a]] as const) {
      const m = await metrics(node);
      expect(m.status).toBe(200);
      expect(m.type).toMatch(/^text\/plain/);
      for (const name of ['tessera_peer_sessions', 'tessera_handshakes_total', 'tessera_envelopes_received_total', 'tessera_replication_lag_envelopes', 'tessera_documents']) {
        expect(m.text, name).toMatch(new RegExp(`^# TYPE ${name} `, 'm'));
      }
      expect(samples(m.text, 'tessera_peer_sessions').get('{state="connected"}')).toBe(1);
      // B accepted A's handshake.
      if (node === b) expect(samples(m.text, 'tessera_handshakes_total').get('{result="ok"}')).toBeGreaterThanOrEqual(1);
      expect(samples(m.text, 'tessera_documents').get('{where="stored"}')).toBe(NAMES.length);
      // Lag is per peer, labelled by the peer, never by document.
      const lag = samples(m.text, 'tessera_replication_lag_envelopes');
      expect([...lag.keys()]).toEqual([`{peer="${other.id}"}`]);
      // Process event-loop lag.
      expect(m.text).toMatch(/^\S*eventloop_lag\S*(\{[^}]*\})?\s+\d/m);
      for (const name of NAMES) {
        for (const part of [name, ...name.split('/')]) expect(m.text.includes(part), `${part} in the metrics of ${node.name}`).toBe(false);
      }
    }
    // B received A's envelopes.
    expect(samples((await metrics(b)).text, 'tessera_envelopes_received_total').get('')).toBeGreaterThanOrEqual(NAMES.length);
  });

  it('how long commits, local writes and received envelopes took, as histograms in seconds', async () => {
    const [a, b] = await writtenOnAReadOnB();
    const histogram = (text: string, name: string) => {
      expect(text).toMatch(new RegExp(`^# TYPE ${name} histogram$`, 'm'));
      const buckets = [...samples(text, `${name}_bucket`)];
      // Cumulative buckets up to +Inf, which counts every observation.
      for (let i = 1; i < buckets.length; i++) expect(buckets[i]![1]).toBeGreaterThanOrEqual(buckets[i - 1]![1]);
      expect(buckets.at(-1)).toEqual(['{le="+Inf"}', samples(text, `${name}_count`).get('')]);
      return { count: samples(text, `${name}_count`).get('')!, sum: samples(text, `${name}_sum`).get('')! };
    };
    const onA = (await metrics(a)).text;
    const writes = histogram(onA, 'tessera_local_write_seconds');
    expect(writes.count).toBe(NAMES.length);
    expect(writes.sum).toBeGreaterThan(0);
    expect(histogram(onA, 'tessera_store_commit_seconds').count).toBeGreaterThanOrEqual(1);
    const onB = (await metrics(b)).text;
    expect(histogram(onB, 'tessera_receive_seconds').count).toBeGreaterThanOrEqual(1);
    expect(histogram(onB, 'tessera_store_commit_seconds').count).toBeGreaterThanOrEqual(1);
    // B wrote nothing of its own.
    expect(histogram(onB, 'tessera_local_write_seconds').count).toBe(0);
  });

  it('needs a read:** token: 403 for narrower read scopes and for write:**, 401 without a token', async () => {
    const a = await testNode('a');
    for (const scopes of [['read:notes/**'], ['write:**'], ['read:*'], ['read:*/**']]) {
      const m = await metrics(a, scopes);
      expect(m.status, scopes.join()).toBe(403);
      expect(JSON.parse(m.text)).toEqual({ error: { code: 'forbidden', message: expect.any(String) } });
    }
    expect((await metrics(a, ['read:**', 'write:notes/**'])).status).toBe(200);
    const none = await fetch(`${a.api}/metrics`);
    expect(none.status).toBe(401);
    expect(await none.json()).toEqual({ error: { code: 'unauthorized', message: expect.any(String) } });
  });
});

describe('GET /v1/status (DESIGN.md §7)', () => {
  it('has exactly the fields of §7: id, name, peers[{name,id,url,state,since}], docs, pending, grant, alarms', async () => {
    const a = await testNode('a');
    const b = await testNode('b');
    const alone = await status(a);
    expectStatusShape(alone);
    expect(alone).toEqual({ id: a.id, name: 'a', peers: [], docs: 0, pending: 0, grant: null, alarms: [] });

    await linkPair(a, b);
    expect((await postUpdate(a, 'notes/one', appDoc().edit((d) => d.getText('t').insert(0, '1')))).status).toBe(200);
    expect((await postUpdate(a, 'notes/two', appDoc().edit((d) => d.getText('t').insert(0, '2')))).status).toBe(200);
    const sa = await status(a);
    expectStatusShape(sa);
    expect(sa).toMatchObject({ id: a.id, name: 'a', docs: 2, pending: 0, grant: null, alarms: [] });
    expect(sa.peers).toEqual([{ name: 'b', id: b.id, url: b.url, state: 'connected', since: expect.any(String) }]);
    expect(Date.parse(sa.peers[0]!.since!)).toBeLessThanOrEqual(Date.now());

    // B does not dial A: A's entry there has no url.
    await waitUntil(async () => (await status(b)).docs === 2, { what: 'B holds both documents' });
    const sb = await status(b);
    expectStatusShape(sb);
    expect(sb.peers).toEqual([{ name: 'a', id: a.id, url: null, state: 'connected', since: expect.any(String) }]);
  });

  it('a peer that is not running shows a state from the list and a since that is an ISO time or null', async () => {
    const a = await testNode('a');
    const b = await testNode('b');
    const bEntry = entryFor(b);
    await b.daemon.stop();
    await setPeers(a, [bEntry]);
    const s = await status(a);
    expectStatusShape(s);
    expect(s.peers).toHaveLength(1);
    expect(s.peers[0]).toMatchObject({ name: 'b', id: b.id, url: b.url });
    expect(s.peers[0]!.state).not.toBe('connected');
  });

  it('alarms (an equivocation) are shown only for documents the token may read', async () => {
    const a = await testNode('a');
    const b = await testNode('b');
    // The same client id and clocks with different content, written on each node before they meet.
    for (const doc of ['notes/eq', 'private/eq']) {
      expect((await postUpdate(a, doc, appDoc(4242).edit((d) => d.getText('t').insert(0, 'alpha')))).status).toBe(200);
      expect((await postUpdate(b, doc, appDoc(4242).edit((d) => d.getText('t').insert(0, 'omega')))).status).toBe(200);
    }
    await linkPair(a, b);
    const all = await waitUntil(
      async () => {
        const s = await status(b);
        return ['notes/eq', 'private/eq'].every((doc) => s.alarms.some((x) => x.doc === doc)) ? s : undefined;
      },
      { what: 'equivocation alarms on B' },
    );
    expectStatusShape(all);
    const alarm = all.alarms.find((x) => x.doc === 'notes/eq')!;
    expect(alarm.kind).toBe('equivocation');
    expect([...alarm.origins].sort()).toEqual([a.id, b.id].sort());
    expect(alarm.peer).toBe(a.id);
    // Each node keeps its own content: the conflicting part was not applied.
    expect((await getDoc(b, 'notes/eq')).body).toEqual({ t: 'omega' });

    const narrow = await status(b, ['read:notes/**']);
    expect(narrow.alarms.length).toBeGreaterThan(0);
    expect(narrow.alarms.every((x) => x.doc === 'notes/eq')).toBe(true);
    expect((await status(b, ['read:other/**'])).alarms).toEqual([]);
    // A write scope is not a read scope.
    expect((await status(b, ['write:**'])).alarms).toEqual([]);

    // The metrics count the alarms without naming their documents.
    const m = await metrics(b);
    expect(samples(m.text, 'tessera_alarms').get('')).toBeGreaterThanOrEqual(2);
    expect(/notes\/eq|private\/eq|"eq"/.test(m.text)).toBe(false);
  });
});
