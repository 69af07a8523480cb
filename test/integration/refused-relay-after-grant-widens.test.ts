/**
 * A peer admitted by grant that relays a document outside its grant gets it
 * refused as not exchangeable (R2). When the peer refreshes its grant in the
 * session with a wider one, the receiver wants that document again at once
 * and takes it in (PROTOCOL.md §6.6), without waiting for the session to
 * end. Real nodes on 127.0.0.1, port 0, each with its own LevelDB folder.
 */
import { describe, expect, it } from 'vitest';
import type { NodeId } from '../../src/types.js';
import { entryFor, peerState, setPeers, status, testNode } from '../helpers/cluster.js';
import { getDoc } from '../helpers/docs.js';
import { waitUntil } from '../helpers/wait.js';
import { authority, grantFor, write, writeGrants } from '../helpers/authority.js';

describe('refused-feed memory and a refreshed grant', () => {
  it('a relayed feed refused because the relay could not exchange the document is wanted again once its refreshed grant allows it', async () => {
    const admin = await authority();
    // hub trusts the authority, and the origin `author` (write everywhere, never connects to it).
    const hub = await testNode('hub');
    // relay announces every second, so a missed want is not waiting for a 5-minute announce.
    const relay = await testNode('relay', { announceInterval: '1s' });
    const author = await testNode('author');
    await setPeers(hub, [entryFor(author, { dial: false, read: [], write: ['**'] })], [admin.entry]);
    await writeGrants(relay, [await grantFor(admin, relay, ['a/**'], ['a/**'])]);
    await setPeers(relay, [entryFor(hub), entryFor(author, { dial: false })]);
    await waitUntil(async () => (await status(hub)).peers.some((p) => p.id === relay.id && p.state === 'connected'), { what: 'hub admits relay by its grant' });
    await setPeers(author, [entryFor(relay)]);
    await waitUntil(async () => (await peerState(relay, author)) === 'connected', { what: 'author and relay connected' });

    // author writes b/x; relay takes it and pushes it to hub, which refuses it: relay may not exchange b/**.
    await write(author, 'b/x', (d) => d.getMap('m').set('k', 'first'));
    await waitUntil(() => hub.lines.some((l) => l.msg === 'envelope refused' && l.doc === 'b/x' && l.reason === 'not_exchangeable' && String(l.feed).startsWith(author.id)), { what: 'hub refuses the relayed b/x' });

    // relay's refreshed grant (later expiry) covers everything; hub takes it into the live session.
    await writeGrants(relay, [await grantFor(admin, relay, ['**'], ['**'], 7_200_000)]);
    await waitUntil(() => hub.daemon.peerManager.session(relay.id as NodeId)?.grant?.read.includes('**'), { what: 'hub uses the wider grant for relay' });
    expect((await status(hub)).peers.find((p) => p.id === relay.id)?.state).toBe('connected');

    // A control on a document hub never refused: it comes across at once.
    await write(author, 'b/y', (d) => d.getMap('m').set('k', 'control'));
    await waitUntil(async () => (await getDoc(hub, 'b/y')).status === 200, { what: 'hub has the control document b/y' });

    // relay announces b/x every second; hub may exchange it with relay now, and author may write it.
    await waitUntil(async () => ((await getDoc(hub, 'b/x')).body.m as { k?: string } | undefined)?.k === 'first', {
      what: 'hub wants and gets b/x, refused earlier only because relay could not exchange it',
      timeoutMs: 10_000,
    });
  });
});
