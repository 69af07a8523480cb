import { describe, expect, it, onTestFinished } from 'vitest';
import fc from 'fast-check';
import * as Y from 'yjs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair, type KeyPair } from '../../src/identity/keys.js';
import { Store } from '../../src/store/store.js';
import { Trust } from '../../src/trust/trust.js';
import { Policy } from '../../src/sync/policy.js';
import { Docs } from '../../src/sync/docs.js';
import type { PeersConfig } from '../../src/config/peers.js';
import type { StoredEnvelope } from '../../src/store/records.js';
import { docToJson } from '../../src/yjs/to-json.js';
import { memoryLogger } from '../helpers/node.js';
import type { DocName, NodeId } from '../../src/types.js';

const DOC = 'prop/doc' as DocName;

interface Node {
  pair: KeyPair;
  docs: Docs;
  app: Y.Doc;
}

async function cluster(n: number): Promise<Node[]> {
  const pairs = await Promise.all(Array.from({ length: n }, () => generateKeyPair()));
  const { log } = memoryLogger('silent');
  const nodes: Node[] = [];
  for (const pair of pairs) {
    const dir = await mkdtemp(join(tmpdir(), 'tessera-prop-'));
    const store = await Store.open(dir, { durability: 'relaxed', log });
    const peers: PeersConfig = { peers: pairs.filter((p) => p !== pair).map((p) => ({ id: p.id, publicKey: p.publicJwk, read: ['**'], write: ['**'] })), authorities: [] };
    const trust = new Trust({ store, peers: () => peers, log, now: Date.now });
    await trust.start();
    const docs = new Docs({ store, identity: pair, policy: new Policy(pair, () => peers, trust, () => undefined), log, now: Date.now, maxDocsInMemory: 10, docIdleTimeoutMs: 3_600_000, snapshotEvery: 7 });
    await docs.start();
    const app = new Y.Doc();
    nodes.push({ pair, docs, app });
    onTestFinished(async () => {
      await docs.stop();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    });
  }
  return nodes;
}

const edit = fc.record({
  node: fc.nat(),
  kind: fc.constantFrom('insert', 'delete', 'map', 'array'),
  text: fc.string({ minLength: 1, maxLength: 4 }),
  at: fc.nat(50),
});
const delivery = fc.record({ from: fc.nat(), to: fc.nat(), pick: fc.array(fc.nat(), { maxLength: 6 }), dup: fc.boolean() });

describe('property: random edits on 3 to 5 nodes, delivered with drops, duplicates, reordering and partitions, converge once healed', () => {
  it('identical JSON and identical encoded state on every node', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 3, max: 5 }), fc.array(fc.oneof(edit.map((e) => ({ e })), delivery.map((d) => ({ d }))), { minLength: 5, maxLength: 40 }), fc.nat(), async (n, steps, cut) => {
        const nodes = await cluster(n);
        const pool: { env: StoredEnvelope; origin: number }[] = [];
        nodes.forEach((node, i) => node.docs.on('envelope', (env, from) => from === undefined && pool.push({ env, origin: i })));
        const partitioned = (a: number, b: number) => (a + b + cut) % 3 === 0;
        for (const step of steps) {
          if ('e' in step) {
            const node = nodes[step.e.node % n]!;
            const live = await node.docs.open(DOC);
            Y.applyUpdate(node.app, Y.encodeStateAsUpdate(live.ydoc));
            let update: Uint8Array | undefined;
            const grab = (u: Uint8Array) => (update = u);
            node.app.on('update', grab);
            const t = node.app.getText('t');
            if (step.e.kind === 'insert') t.insert(Math.min(step.e.at, t.length), step.e.text);
            else if (step.e.kind === 'delete' && t.length) t.delete(step.e.at % t.length, 1);
            else if (step.e.kind === 'map') node.app.getMap('m').set(step.e.text, step.e.at);
            else node.app.getArray('a').insert(0, [step.e.text]);
            node.app.off('update', grab);
            if (update) await node.docs.write(DOC, update);
          } else {
            const from = step.d.from % n;
            const to = step.d.to % n;
            if (from === to || partitioned(from, to) || !pool.length) continue;
            const items = step.d.pick.map((p) => pool[p % pool.length]!.env);
            if (step.d.dup) items.push(...items);
            await nodes[to]!.docs.receive(nodes[from]!.pair.id as NodeId, items);
          }
        }
        // Heal: every node gets every envelope, in seq order per feed, from any peer.
        const all = [...pool].sort((a, b) => a.env.seq - b.env.seq).map((p) => p.env);
        for (let i = 0; i < n; i++) {
          const from = nodes[(i + 1) % n]!.pair.id as NodeId;
          await nodes[i]!.docs.receive(from, all);
        }
        const states = await Promise.all(nodes.map(async (node) => {
          const live = await node.docs.open(DOC);
          return { json: JSON.stringify(docToJson(live.ydoc)), digest: await node.docs.digest(DOC), vector: await node.docs.vector(DOC) };
        }));
        for (const s of states.slice(1)) {
          expect(s.vector).toEqual(states[0]!.vector);
          expect(s.json).toBe(states[0]!.json);
          expect(s.digest).toBe(states[0]!.digest);
        }
      }),
      { numRuns: 25 },
    );
  }, 240_000);
});
