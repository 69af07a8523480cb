/**
 * A relay sends, before a frame of envelopes, the grants it holds for each
 * origin in that frame (up to 8 it cannot verify per origin, whatever their
 * authority). A peer that pushes made-up grants for 40 origins (their ids are
 * public; more than 256 / 8 = 32 in one frame is enough) makes that list
 * longer than one `grants` message may be: the relay splits it, so its honest
 * peer is never closed for it and catches up.
 */
import { describe, expect, it } from 'vitest';
import { generateKeyPair } from '../../src/identity/keys.js';
import { Close } from '../../src/protocol/close-codes.js';
import type { DocName } from '../../src/types.js';
import { entryFor, peerState, setPeers, testNode } from '../helpers/cluster.js';
import { junkGrant } from '../helpers/junk.js';
import { mallory } from '../helpers/mallory.js';
import { envelope, newFeed, rawEntry, yUpdate } from '../helpers/raw-peer.js';
import { waitUntil } from '../helpers/wait.js';

describe('grants passed on with envelopes', () => {
  it('8 made-up grants for each of 40 origins: the honest peer gets all 40 envelopes in the same session, never closed 4018', async () => {
    const target = await testNode('target');
    const b = await testNode('b');
    const origins = await Promise.all(Array.from({ length: 40 }, () => generateKeyPair()));
    const originEntries = origins.map((o, i) => rawEntry(`o${i}`, o, { read: [], write: ['z/**'] }));
    await setPeers(b, [entryFor(target, { dial: false }), ...originEntries]);
    const m = await mallory(target, [entryFor(b), ...originEntries], [], { read: [], write: ['z/**'] });
    await waitUntil(async () => (await peerState(target, b)) === 'connected', { what: 'target-b link' });
    const sessions = () => target.lines.filter((l) => l.msg === 'session established' && l.peer === b.id).length;
    const before = sessions();

    for (const o of origins) m.peer.send({ type: 'grants', grants: Array.from({ length: 8 }, (_, i) => junkGrant(o.id, { exp: i + 1 })), revocations: [] });
    // mallory relays one genuine envelope of each origin (signed by them; here the test holds their keys).
    m.peer.offer(...origins.map((o, i) => envelope(o, { doc: 'z/doc', feed: newFeed(), seq: 1, update: yUpdate(100 + i, (d) => d.getMap('m').set(`o${i}`, i)) })));
    await waitUntil(async () => Object.keys(await b.daemon.docs.vector('z/doc' as DocName)).length === 40, { what: 'b holds all 40' });

    expect(b.lines.filter((l) => l.msg === 'closing session' && l.code === Close.protocolError.code)).toEqual([]);
    expect(sessions()).toBe(before);
  });
});
