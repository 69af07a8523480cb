/**
 * The contract, black-box: DESIGN.md §8 `tessera start` signals (SIGTERM, SIGINT:
 * finish durable writes, close sessions, remove daemon.json, exit 0) and §2
 * (SIGHUP reloads the peers and grants files).
 */
import { describe, expect, it, onTestFinished } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { CLI, nodeDir, spawnNode, tempDir } from '../helpers/node.js';

/** Spawns `tessera start` and resolves its exit; `onLine` sees each parsed stdout line. */
function startRaw(dir: string, onLine: (l: Record<string, unknown>, child: ReturnType<typeof spawn>) => void) {
  const child = spawn(process.execPath, [CLI, 'start', '--data', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
  onTestFinished(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  createInterface({ input: child.stdout! }).on('line', (text) => {
    try {
      onLine(JSON.parse(text) as Record<string, unknown>, child);
    } catch {
      /* not JSON */
    }
  });
  return { child, exited };
}

/** A data dir without identity.json but with a port-0 tessera.json: the first log line ("initialised") comes before anything binds. */
async function uninitialised(): Promise<string> {
  const dir = join(await tempDir(), 'fresh');
  await mkdir(dir);
  await writeFile(join(dir, 'tessera.json'), JSON.stringify({ name: 'fresh', listen: '127.0.0.1:0', api: '127.0.0.1:0' }));
  return dir;
}

describe('§8 SIGINT', () => {
  it('SIGINT: daemon.json removed, "stopped" logged, exit 0', async () => {
    const { dir } = await nodeDir();
    const node = await spawnNode(dir);
    expect(existsSync(join(dir, 'daemon.json'))).toBe(true);
    expect(await node.stop('SIGINT')).toBe(0);
    expect(existsSync(join(dir, 'daemon.json'))).toBe(false);
    expect(node.lines.some((l) => l.msg === 'stopped')).toBe(true);
  });
});

describe('§2 SIGHUP while the node is starting', () => {
  it('a SIGHUP that arrives before the listening line does not kill the daemon', async () => {
    const dir = await uninitialised();
    let listening = false;
    const { child, exited } = startRaw(dir, (l, c) => {
      if (l.msg === 'initialised a new data directory') c.kill('SIGHUP');
      if (l.msg === 'listening') {
        listening = true;
        c.kill('SIGTERM');
      }
    });
    const end = await exited;
    expect({ listening, ...end }, `pid ${child.pid}`).toEqual({ listening: true, code: 0, signal: null });
  });
});

describe('§8 SIGTERM while the node is starting', () => {
  it('a SIGTERM before the listening line still ends with exit 0 (not killed by the signal)', async () => {
    const dir = await uninitialised();
    const { exited } = startRaw(dir, (l, c) => {
      if (l.msg === 'initialised a new data directory') c.kill('SIGTERM');
    });
    expect(await exited).toEqual({ code: 0, signal: null });
    expect(existsSync(join(dir, 'daemon.json'))).toBe(false);
  });
});

describe('§8 a second SIGTERM while stopping', () => {
  it('does not cut the clean stop short: exit 0 and daemon.json removed', async () => {
    const { dir } = await nodeDir();
    const node = await spawnNode(dir);
    // The second signal lands while stop() runs (it takes tens of ms).
    node.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 3));
    node.child.kill('SIGTERM');
    const code = await node.stop();
    expect({ code, signal: node.child.signalCode }).toEqual({ code: 0, signal: null });
    expect(existsSync(join(dir, 'daemon.json'))).toBe(false);
  });
});
