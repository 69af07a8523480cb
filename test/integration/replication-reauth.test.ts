/**
 * Writes streaming on both nodes while their session expires and the pair
 * re-authenticates (DESIGN.md §3: "without losing or duplicating an update").
 */
import { describe, expect, it } from 'vitest';
import type { Session } from '../../src/net/session.js';
import type { DocName } from '../../src/types.js';
import { linkPair, testNode, type TestNode } from '../helpers/cluster.js';
import { appDoc, getDoc, postUpdate } from '../helpers/docs.js';
import { waitUntil } from '../helpers/wait.js';

/** Every envelope `node` receives on any session from now on, keyed `<feed>#<seq>`, with repeats. */
function received(node: TestNode): string[] {
  const keys: string[] = [];
  node.daemon.peerManager.on('session', (s: Session) =>
    s.on('message', (m) => {
      if (m.type !== 'envelopes') return;
      for (const item of m.items) {
        const c = JSON.parse(Buffer.from(item.token.split('.')[1]!, 'base64url').toString('utf8')) as { iss: string; feed: string; seq: number };
        keys.push(`${c.iss}:${c.feed}#${c.seq}`);
      }
    }),
  );
  return keys;
}

describe('replication across session expiry', () => {
  it('writes streaming on both sides through two re-authentications: none lost, none duplicated', async () => {
    const a = await testNode('a', { sessionTtl: '2s' });
    const b = await testNode('b', { sessionTtl: '2s' });
    const inA = received(a);
    const inB = received(b);
    await linkPair(a, b);
    const established = () => a.lines.filter((l) => l.msg === 'session established').length;
    const start = established();

    const doc = 'reauth/doc' as DocName;
    const writer = (node: TestNode, prefix: string) => {
      const app = appDoc();
      let n = 0;
      return {
        get count() {
          return n;
        },
        async step() {
          const res = await postUpdate(node, doc, app.edit((d) => d.getArray('a').push([`${prefix}${n}`])));
          expect(res.status).toBe(200);
          n++;
        },
      };
    };
    const wa = writer(a, 'a');
    const wb = writer(b, 'b');
    // Write until the session has been replaced twice (each step awaits its acknowledgement).
    const cap = 5000;
    while (established() < start + 2 && wa.count < cap) await Promise.all([wa.step(), wb.step()]);
    expect(established()).toBeGreaterThanOrEqual(start + 2);
    // And a few more on the newest session.
    for (let i = 0; i < 5; i++) await Promise.all([wa.step(), wb.step()]);

    const total = wa.count + wb.count;
    const expected = [...[...Array(wa.count).keys()].map((i) => `a${i}`), ...[...Array(wb.count).keys()].map((i) => `b${i}`)].sort();
    await waitUntil(async () => ((await getDoc(a, doc)).body.a as unknown[]).length === total && ((await getDoc(b, doc)).body.a as unknown[]).length === total, {
      what: 'both hold every write',
      timeoutMs: 30_000,
    });
    for (const node of [a, b]) {
      const items = (await getDoc(node, doc)).body.a as string[];
      expect([...items].sort()).toEqual(expected); // every write, each exactly once
    }
    // One envelope per acknowledged write, counted in each feed, on both nodes.
    const va = await a.daemon.docs.vector(doc);
    expect(va).toEqual(await b.daemon.docs.vector(doc));
    expect(va).toEqual({ [a.daemon.docs.ownFeed]: wa.count, [b.daemon.docs.ownFeed]: wb.count });
    expect((await a.daemon.verify()).ok).toBe(true);
    expect((await b.daemon.verify()).ok).toBe(true);
    expect(await a.daemon.docs.digest(doc)).toBe(await b.daemon.docs.digest(doc));

    // Sessions really were replaced, and each envelope crossed at least once.
    expect(a.lines.some((l) => l.msg === 'session closed' && (l.code === 4014 || l.code === 4012))).toBe(true);
    expect(new Set(inB).size).toBe(wa.count);
    expect(new Set(inA).size).toBe(wb.count);
    // Re-sends across a re-authentication (an envelope in flight when the old session closed) stay rare.
    const repeats = inA.length - new Set(inA).size + inB.length - new Set(inB).size;
    expect(repeats).toBeLessThanOrEqual(8);
  });
});
