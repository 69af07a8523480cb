/**
 * Grants and revocations that claim a trusted authority cost a signature
 * check each. A peer that passes on more than a few that fail it (forged by
 * someone) makes this node check nothing more of what it sends for the rest
 * of that session, so one listed peer cannot keep a core busy with them; it
 * is not cut off (an honest relay may pass on forgeries it could not check),
 * and other sessions are not touched. Real node on 127.0.0.1, port 0, with
 * its own LevelDB folder; raw peers do the real handshake.
 */
import { describe, expect, it } from 'vitest';
import { generateKeyPair, thumbprint, type KeyPair } from '../../src/identity/keys.js';
import type { NodeId } from '../../src/types.js';
import { testNode } from '../helpers/cluster.js';
import { authority, grantFor, revocationOf } from '../helpers/authority.js';
import { randomId } from '../helpers/junk.js';
import { mallory } from '../helpers/mallory.js';
import { rawEntry, RawSyncPeer } from '../helpers/raw-peer.js';
import { setPeers } from '../helpers/cluster.js';
import { waitUntil } from '../helpers/wait.js';

/** A node id and key that no one holds. */
function stranger(): { id: string; publicKey: { kty: 'OKP'; crv: 'Ed25519'; x: string } } {
  const publicKey = { kty: 'OKP', crv: 'Ed25519', x: randomId() } as const;
  return { id: thumbprint(publicKey), publicKey };
}

describe('forged grants and revocations from one session', () => {
  it('past the budget, its tokens that need a check are ignored for the session; another session\'s are checked', async () => {
    const admin = await authority();
    const hub = await testNode('hub');
    const m = await mallory(hub, [], [admin.entry]);
    // Signed by another key under the authority's id: they fail the check.
    const fake = await generateKeyPair();
    const posing = { ...fake, id: admin.id } as KeyPair;
    const forged = await Promise.all(Array.from({ length: 70 }, () => grantFor(posing, stranger())));
    const forgedRevocations = await Promise.all(Array.from({ length: 10 }, () => revocationOf(posing, { id: randomId() })));
    m.peer.send({ type: 'grants', grants: forged, revocations: forgedRevocations });
    await m.settle();
    expect(hub.lines.filter((l) => String(l.msg).startsWith('peer passed on too many grants or revocations')).length).toBe(1);

    // A genuine grant from the same session now goes unchecked and is not kept.
    const subject = stranger();
    const genuine = await grantFor(admin, subject);
    m.peer.send({ type: 'grants', grants: [genuine], revocations: [] });
    await m.settle();
    expect(hub.daemon.trust.rawGrantsFor(subject.id as NodeId)).toEqual([]);
    expect(m.peer.isOpen).toBe(true);

    // The same grant from another peer's session is checked and kept.
    const pair = await generateKeyPair();
    await setPeers(hub, [rawEntry('mallory', m.pair, { read: [], write: ['marker/**'] }), rawEntry('other', pair, { read: [], write: [] })], [admin.entry]);
    const other = await RawSyncPeer.dial(hub.url, pair, hub);
    other.send({ type: 'grants', grants: [genuine], revocations: [] });
    await waitUntil(() => hub.daemon.trust.rawGrantsFor(subject.id as NodeId).length > 0, { what: 'the hub checked and kept the grant from the other session' });
    expect(hub.daemon.trust.rawGrantsFor(subject.id as NodeId)).toEqual([genuine]);
  });
});
