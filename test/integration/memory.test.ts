/**
 * Memory (issue 8, DESIGN.md §9): a node holding many documents keeps only
 * the ones in use in memory. 2,000 documents are written through the API,
 * then a client reads every one of them; at no point are more than
 * maxDocsInMemory documents loaded, and once the client is done they are
 * unloaded after docIdleTimeout. The resident memory is printed, not asserted.
 */
import { describe, expect, it } from 'vitest';
import { testNode } from '../helpers/cluster.js';
import { appDoc, getDoc, postUpdate } from '../helpers/docs.js';
import { waitUntil } from '../helpers/wait.js';

const DOCS = 2000;
const MAX_LOADED = 50;
/** Concurrent writers (the walk is one client, reading one document after another). */
const CLIENTS = 8;

/** Runs `task(i)` for i in [0, count) on `clients` concurrent workers. */
async function eachConcurrently(count: number, clients: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (next < count) await task(next++);
    }),
  );
}

describe('documents in memory', () => {
  it(`a node holding ${DOCS} documents keeps at most maxDocsInMemory (${MAX_LOADED}) loaded while a client walks through all of them`, async () => {
    const node = await testNode('librarian', { maxDocsInMemory: MAX_LOADED, docIdleTimeout: '2s' });
    const docs = node.daemon.docs;
    const token = await node.token();
    let peak = 0;
    const sample = () => (peak = Math.max(peak, docs.loadedCount));
    const name = (i: number) => `shelf/${String(i).padStart(5, '0')}`;

    await eachConcurrently(DOCS, CLIENTS, async (i) => {
      const res = await postUpdate(node, name(i), appDoc().edit((d) => d.getMap('m').set('n', i)), token);
      expect(res.status).toBe(200);
      sample();
    });
    expect(docs.count).toBe(DOCS);
    const writePeak = peak;
    peak = docs.loadedCount;

    const rssBefore = process.memoryUsage().rss;
    let rssPeak = rssBefore;
    await eachConcurrently(DOCS, 1, async (i) => {
      const res = await getDoc(node, name(i), token);
      expect(res.status).toBe(200);
      expect((res.body.m as { n: number }).n).toBe(i);
      sample();
      if (i % 100 === 0) rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
    });
    console.log(
      `memory: ${DOCS} documents written and read; loaded at most ${peak} while walking (writing: ${writePeak}), maxDocsInMemory ${MAX_LOADED}; ` +
        `RSS of the test process (node in-process) ${mib(rssBefore)} MiB before the walk, peak ${mib(rssPeak)} MiB`,
    );
    // Idle documents are unloaded once docIdleTimeout has passed.
    await waitUntil(() => docs.loadedCount === 0, { what: 'idle documents unloaded', timeoutMs: 20_000 });
    expect(peak, 'documents loaded at once during the walk').toBeLessThanOrEqual(MAX_LOADED);
    expect(writePeak, `documents loaded at once while ${CLIENTS} clients wrote`).toBeLessThanOrEqual(MAX_LOADED);
  }, 60_000);
});

const mib = (bytes: number) => Math.round(bytes / 1048576);
