import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { nodeDir, runCli, spawnNode } from '../helpers/node.js';

describe('tessera start', () => {
  it('serves healthz and status, writes daemon.json, and stops cleanly on SIGTERM', async () => {
    const { dir, id } = await nodeDir({ name: 'alpha' });
    const node = await spawnNode(dir);
    expect(node.id).toBe(id);
    expect(node.peer).toMatch(/^127\.0\.0\.1:\d+$/);
    const health = await fetch(`http://${node.api}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ ok: true });
    expect(existsSync(join(dir, 'daemon.json'))).toBe(true);

    const status = await runCli(['status', '--data', dir, '--json']);
    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ id, name: 'alpha', peers: [], docs: 0 });

    expect(await node.stop('SIGTERM')).toBe(0);
    expect(existsSync(join(dir, 'daemon.json'))).toBe(false);
  });
});
