/**
 * A node revoked by an authority it trusts refuses its apps' writes beyond
 * its own cutoff (403 revoked) instead of acknowledging what its next
 * rebuild would drop, and only what it would sign: an update that carries
 * nothing new is still acknowledged, so a y-websocket app with a write
 * token can still open and view documents there. Real daemon on 127.0.0.1,
 * port 0, with its own LevelDB folder.
 */
import * as Y from 'yjs';
import WebSocket from 'ws';
import { describe, expect, it, onTestFinished } from 'vitest';
import { WebsocketProvider } from 'y-websocket';
import { setPeers, testNode, type TestNode } from '../helpers/cluster.js';
import { appDoc, getDoc, getState, postUpdate } from '../helpers/docs.js';
import { randomId } from '../helpers/junk.js';
import { waitUntil } from '../helpers/wait.js';
import { authority, feedOf, revocationOf, write, writeGrants } from '../helpers/authority.js';

/** App updates the node has taken in through to durable (its /metrics histogram's count). */
async function writesHandled(node: TestNode): Promise<number> {
  const text = await (await fetch(`${node.api}/metrics`, { headers: { authorization: `Bearer ${await node.token()}` } })).text();
  return Number(text.split('\n').find((l) => l.startsWith('tessera_local_write_seconds_count'))?.split(' ')[1] ?? NaN);
}

/** How many times the node has rebuilt its documents after a change of revocations (apps of a rebuilt document are closed 4410). */
const rebuilds = (node: TestNode) => node.lines.filter((l) => l.msg === 'revocations changed: documents rebuilt').length;

/** A node that wrote d, then took in its own revocation (keeping seq 1 of d): the authority, the node, and d's state. */
async function revokedNode() {
  const admin = await authority();
  const x = await testNode('x');
  await setPeers(x, [], [admin.entry]);
  await write(x, 'd', (d) => d.getMap('m').set('before', 1));
  const state = await getState(x, 'd');
  await writeGrants(x, [], [await revocationOf(admin, x, { d: { [feedOf(x)]: 1 } })]);
  await waitUntil(() => rebuilds(x) === 1, { what: 'x took in its own revocation and rebuilt its documents' });
  expect(x.daemon.trust.isRevoked(x.id as never)).toBe(true);
  return { admin, x, state };
}

describe('a revoked node and its apps', () => {
  it('a write beyond its cutoff is refused (403 revoked); a rebuild finds everything it acknowledged', async () => {
    const { admin, x } = await revokedNode();
    const res = await postUpdate(x, 'd', appDoc().edit((d) => d.getMap('m').set('after', 2)));
    expect(res.status).toBe(403);
    expect(res.body).toMatchObject({ error: { code: 'revoked' } });
    expect((await getDoc(x, 'd')).body).toEqual({ m: { before: 1 } });
    // Another revocation makes the node rebuild: what it acknowledged is all still there.
    await writeGrants(x, [], [await revocationOf(admin, x, { d: { [feedOf(x)]: 1 } }), await revocationOf(admin, { id: randomId() })]);
    await waitUntil(() => rebuilds(x) === 2, { what: 'x rebuilt its documents again' });
    expect((await getDoc(x, 'd')).body).toEqual({ m: { before: 1 } });
  });

  it('an update with nothing new is still acknowledged (200), as before the revocation', async () => {
    const { x, state } = await revokedNode();
    // Nothing new in either: nothing would be signed, so nothing is lost at a rebuild.
    const empty = await postUpdate(x, 'd', new Uint8Array([0, 0]));
    const same = await postUpdate(x, 'd', state);
    expect({ empty: empty.status, same: same.status }).toEqual({ empty: 200, same: 200 });
  });

  it('a y-websocket app with a write token can still view a document on a revoked node', async () => {
    const { x } = await revokedNode();
    const before = await writesHandled(x);
    const ydoc = new Y.Doc();
    const p = new WebsocketProvider(`ws://127.0.0.1:${x.daemon.apiAddress.port}/v1/yjs`, 'd', ydoc, {
      WebSocketPolyfill: WebSocket as never,
      params: { token: await x.token() },
      disableBc: true,
      maxBackoffTime: 100_000,
    });
    onTestFinished(() => {
      p.destroy();
      ydoc.destroy();
    });
    const closes: number[] = [];
    p.on('connection-close', (e: { code: number } | null) => {
      if (e) closes.push(e.code);
    });
    await waitUntil(() => p.synced || closes.length > 0, { what: 'provider synced or closed' });
    expect(closes).toEqual([]);
    expect(ydoc.getMap('m').toJSON()).toEqual({ before: 1 });
    // The provider answers the node's sync step 1 with a sync step 2 carrying nothing new: handled as a write, and acknowledged.
    await waitUntil(async () => (await writesHandled(x)) > before, { what: "the node handled the provider's sync step 2" });
    expect(closes).toEqual([]);
    expect((await getDoc(x, 'd')).body).toEqual({ m: { before: 1 } });
  });
});
