/**
 * Envelopes of a revoked origin beyond its cutoff are kept apart (never
 * applied or forwarded) in case the cutoff is raised. Kept as the first
 * version seen, like stored envelopes: a different envelope for the same
 * feed and seq is a conflict, never a replacement, or nodes that saw them
 * in different orders would restore different content.
 */
import { describe, expect, it } from 'vitest';
import { generateKeyPair } from '../../src/identity/keys.js';
import { decodeEnvelopeValue, envelopeKey } from '../../src/store/records.js';
import { feedKey, type DocName } from '../../src/types.js';
import { withStore } from '../helpers/node.js';
import { Space } from '../../src/store/store.js';
import { testNode } from '../helpers/cluster.js';
import { mallory } from '../helpers/mallory.js';
import { envelope, newFeed, rawEntry, yUpdate } from '../helpers/raw-peer.js';
import { waitUntil } from '../helpers/wait.js';

describe('envelopes beyond a revocation cutoff', () => {
  it('a second, different version of a dropped envelope is refused as a conflict (alarm) and the first one stays', async () => {
    const target = await testNode('target');
    const evil = await generateKeyPair();
    const revoked = { ...rawEntry('evil', evil, { read: [], write: ['x/**'] }), revoked: { at: new Date().toISOString(), cutoff: { '*': {} } } };
    const relay = await mallory(target, [revoked], [], { read: [], write: ['x/**'] });
    const feed = newFeed();
    const first = envelope(evil, { doc: 'x/doc', feed, seq: 1, update: yUpdate(5151, (d) => d.getMap('m').set('k', 'first')) });
    const second = envelope(evil, { doc: 'x/doc', feed, seq: 1, update: yUpdate(5151, (d) => d.getMap('m').set('k', 'second')) });
    relay.peer.offer(first);
    await relay.settle();
    relay.peer.offer(second);
    await relay.settle();
    await waitUntil(() => target.daemon.alarms.some((a) => a.kind === 'conflicting_envelope'), { what: 'a conflict alarm' });
    await target.daemon.stop();
    const kept = await withStore(target.dir, (store) => store.get(Space.dropped, envelopeKey('x/doc' as DocName, feedKey(evil.id, feed), 1)));
    expect(kept && decodeEnvelopeValue(kept).token).toBe(first.token);
  });
});
