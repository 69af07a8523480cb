import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { nodeDir, runCli, spawnNode } from '../helpers/node.js';
import { issueApiToken } from '../../src/tokens/api-token.js';
import { readKeyFile } from '../../src/identity/file.js';
import { join } from 'node:path';

const ROUNDS = Number(process.env.TESSERA_CRASH_ROUNDS ?? 20);

/**
 * Crash safety (issue 8): a client streams writes, the node is killed with
 * SIGKILL at a random moment, restarted, and a set checker compares what was
 * acknowledged with what is there: lost = 0, nothing unwritten appears, the
 * store opens cleanly and verifies (no envelope twice, no gap).
 */
describe('crash safety under SIGKILL', () => {
  it(`${ROUNDS} rounds: every acknowledged write survives, nothing else appears`, async () => {
    const { dir } = await nodeDir({ name: 'crashy' });
    const identity = await readKeyFile(join(dir, 'identity.json'));
    const token = await issueApiToken(identity, { scopes: ['read:**', 'write:**'], ttlMs: 3_600_000 });
    const acknowledged = new Set<string>();
    const attempted = new Set<string>();
    let lost = 0;
    let seq = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const node = await spawnNode(dir);
      const base = `http://${node.api}`;
      const check = await fetch(`${base}/v1/docs/crash%2Fset`, { headers: { authorization: `Bearer ${token}` } });
      if (acknowledged.size) {
        const keys = Object.keys(((await check.json()) as { m?: Record<string, unknown> }).m ?? {});
        for (const k of acknowledged) if (!keys.includes(k)) lost++;
        for (const k of keys) expect(attempted.has(k), `unwritten key ${k} appeared`).toBe(true);
      }
      const killAfter = 20 + Math.floor(Math.random() * 150);
      const app = new Y.Doc();
      const writer = (async () => {
        for (;;) {
          const key = `w${seq++}`;
          attempted.add(key);
          let update: Uint8Array | undefined;
          app.once('update', (u: Uint8Array) => (update = u));
          app.getMap('m').set(key, round);
          try {
            const res = await fetch(`${base}/v1/docs/crash%2Fset/updates`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: update });
            if (res.status === 200) acknowledged.add(key);
          } catch {
            return;
          }
        }
      })();
      await new Promise((r) => setTimeout(r, killAfter));
      node.child.kill('SIGKILL');
      await node.stop('SIGKILL');
      await writer;
    }
    const verify = await runCli(['verify', '--data', dir]);
    expect(verify.stdout).toContain('ok');
    expect(verify.code).toBe(0);
    const node = await spawnNode(dir);
    const res = await fetch(`http://${node.api}/v1/docs/crash%2Fset`, { headers: { authorization: `Bearer ${token}` } });
    const keys = Object.keys(((await res.json()) as { m: Record<string, unknown> }).m);
    for (const k of acknowledged) if (!keys.includes(k)) lost++;
    expect(lost).toBe(0);
    expect(acknowledged.size).toBeGreaterThan(ROUNDS);
    console.log(`crash rounds: ${ROUNDS}, writes acknowledged: ${acknowledged.size}, lost: ${lost}`);
    await node.stop();
  }, 180_000);
});
