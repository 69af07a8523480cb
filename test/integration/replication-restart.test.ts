/**
 * Restarts (DESIGN.md §5, §6): a node that stopped resumes from its vector,
 * receiving only what it lacks; and a write acknowledged by a node that is
 * then killed with SIGKILL is there when it starts again.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readKeyFile } from '../../src/identity/file.js';
import type { Session } from '../../src/net/session.js';
import type { SessionMessage } from '../../src/protocol/messages.js';
import { issueApiToken } from '../../src/tokens/api-token.js';
import type { DocName } from '../../src/types.js';
import { entryFor, peerState, setPeers, testNode, type TestNode } from '../helpers/cluster.js';
import { appDoc, getDoc, postUpdate } from '../helpers/docs.js';
import { nodeDir, runCli, spawnNode, startDaemon, type SpawnedNode } from '../helpers/node.js';
import { waitUntil } from '../helpers/wait.js';

/**
 * Counts what `node` sends on every session it keeps from now on. SyncService
 * keeps `counters` (envelopesOut) but the Daemon does not expose it, so the
 * count is taken on the sessions themselves, which PeerManager announces.
 */
function countSent(node: TestNode) {
  const sent: { peer: string; message: SessionMessage }[] = [];
  const received: { peer: string; message: SessionMessage }[] = [];
  node.daemon.peerManager.on('session', (session: Session) => {
    const send = session.send.bind(session);
    session.send = (message: SessionMessage) => {
      sent.push({ peer: session.peer, message });
      send(message);
    };
    session.on('message', (message) => received.push({ peer: session.peer, message }));
  });
  return {
    sent,
    received,
    envelopesTo: (peer: string) => sent.filter((s) => s.peer === peer).reduce((n, s) => n + (s.message.type === 'envelopes' ? s.message.items.length : 0), 0),
  };
}

/** The value of a metric (no labels) in a node's /metrics text. */
async function metric(node: TestNode, name: string): Promise<number> {
  const res = await fetch(`${node.api}/metrics`, { headers: { authorization: `Bearer ${await node.token()}` } });
  expect(res.status).toBe(200);
  const line = (await res.text()).split('\n').find((l) => l.startsWith(`${name} `));
  if (!line) throw new Error(`no metric ${name}`);
  return Number(line.slice(name.length + 1));
}

/** A TestNode for a daemon restarted on `before`'s data directory (same identity, new ports). */
async function restart(before: TestNode): Promise<TestNode> {
  const { daemon, lines, api } = await startDaemon({ dir: before.dir });
  return { ...before, daemon, lines, api, url: `ws://127.0.0.1:${daemon.peerAddress.port}` };
}

describe('a restarted node', () => {
  it('resumes from its vector: after a restart it receives only the envelopes written while it was down', async () => {
    const a = await testNode('a');
    const b = await testNode('b', { reconnectMax: '500ms' });
    await setPeers(a, [entryFor(b, { dial: false })]);
    await setPeers(b, [entryFor(a)]); // b dials a, so a keeps its address across b's restart
    await waitUntil(async () => (await peerState(b, a)) === 'connected', { what: 'b connected to a' });

    const doc = 'restart/doc' as DocName;
    const app = appDoc();
    for (let i = 0; i < 20; i++) expect((await postUpdate(a, doc, app.edit((d) => d.getArray('a').push([i])))).status).toBe(200);
    const feed = a.daemon.docs.ownFeed;
    await waitUntil(async () => (await b.daemon.docs.vector(doc))[feed] === 20, { what: 'b holds 20 envelopes of a' });

    await b.daemon.stop();
    await waitUntil(async () => (await peerState(a, b)) !== 'connected', { what: 'a sees b gone' });
    for (let i = 20; i < 25; i++) expect((await postUpdate(a, doc, app.edit((d) => d.getArray('a').push([i])))).status).toBe(200);
    expect((await a.daemon.docs.vector(doc))[feed]).toBe(25);

    const counted = countSent(a);
    const sentBefore = await metric(a, 'tessera_envelopes_sent_total');
    const b2 = await restart(b);
    await waitUntil(async () => (await b2.daemon.docs.vector(doc))[feed] === 25, { what: 'restarted b holds all 25' });
    expect((await getDoc(b2, doc)).body.a).toEqual([...Array(25).keys()]);

    // b asked from where it was (its stored vector), and a sent only what was new.
    const want = counted.received.find((r) => r.peer === b.id && r.message.type === 'want')?.message;
    expect(want).toMatchObject({ type: 'want', docs: { [doc]: { [feed]: 20 } } });
    const sentToB = counted.envelopesTo(b.id);
    expect(sentToB).toBeGreaterThanOrEqual(5);
    expect(sentToB).toBeLessThanOrEqual(5 + 2);
    // The node's own sync counter (SyncService.counters, read through /metrics) agrees.
    const sentAfter = await metric(a, 'tessera_envelopes_sent_total');
    expect(sentAfter - sentBefore).toBe(sentToB);
    expect((await b2.daemon.verify()).ok).toBe(true);
  });

  it('a restarted node that missed nothing is sent nothing', async () => {
    const a = await testNode('a');
    const b = await testNode('b', { reconnectMax: '500ms' });
    await setPeers(a, [entryFor(b, { dial: false })]);
    await setPeers(b, [entryFor(a)]);
    await waitUntil(async () => (await peerState(b, a)) === 'connected');
    const doc = 'restart/idle' as DocName;
    const app = appDoc();
    for (let i = 0; i < 10; i++) await postUpdate(a, doc, app.edit((d) => d.getMap('m').set(`k${i}`, i)));
    await waitUntil(async () => (await b.daemon.docs.vector(doc))[a.daemon.docs.ownFeed] === 10);
    await b.daemon.stop();

    const counted = countSent(a);
    const b2 = await restart(b);
    await waitUntil(async () => (await peerState(a, b2)) === 'connected' && (await peerState(b2, a)) === 'connected', { what: 'reconnected' });
    // The announce exchange is over once a has seen b's announce (b sends it first thing).
    await waitUntil(() => counted.received.some((r) => r.message.type === 'announce'), { what: "b's announce reached a" });
    // b's vector equals a's, so b wants nothing; a marker write afterwards is the only envelope sent.
    await postUpdate(a, 'restart/marker', appDoc().edit((d) => d.getMap('m').set('done', true)));
    await waitUntil(async () => b2.daemon.docs.has('restart/marker' as DocName), { what: 'marker arrived' });
    expect(counted.received.some((r) => r.message.type === 'want' && doc in r.message.docs)).toBe(false);
    expect(counted.envelopesTo(b.id)).toBe(1);
  });
});

describe('kill -9 right after an acknowledged write', () => {
  it('the acknowledged writes are there after a restart, and tessera verify passes', async () => {
    const { dir } = await nodeDir({ name: 'k' });
    const identity = await readKeyFile(join(dir, 'identity.json'));
    const token = await issueApiToken(identity, { scopes: ['read:**', 'write:**'], ttlMs: 3_600_000 });
    const asNode = (s: SpawnedNode) => ({ api: `http://${s.api}`, token: async () => token }) as unknown as TestNode;

    const first = await spawnNode(dir);
    const app = appDoc();
    const doc = 'crash/doc';
    for (let i = 0; i < 10; i++) {
      const res = await postUpdate(asNode(first), doc, app.edit((d) => d.getArray('a').push([`w${i}`])));
      expect(res.status).toBe(200);
    }
    // The last acknowledgement is in; kill at once, with no chance to flush or snapshot.
    first.child.kill('SIGKILL');
    await first.stop();
    expect(first.child.signalCode).toBe('SIGKILL');

    // Offline verify on the store left behind by the crash.
    const offline = await runCli(['verify', '--data', dir]);
    expect(offline.stderr + offline.stdout).not.toMatch(/FAILED/);
    expect(offline.code).toBe(0);

    const second = await spawnNode(dir);
    const res = await getDoc(asNode(second), doc);
    expect(res.status).toBe(200);
    expect(res.body.a).toEqual([...Array(10).keys()].map((i) => `w${i}`));
    const live = await runCli(['verify', '--data', dir]);
    expect(live.code).toBe(0);
    expect(await second.stop('SIGTERM')).toBe(0);
  });
});
