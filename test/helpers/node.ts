import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { onTestFinished } from 'vitest';
import { Daemon } from '../../src/daemon.js';
import { createLogger } from '../../src/log.js';
import { initDataDir, STORE_DIR } from '../../src/init.js';
import { Store } from '../../src/store/store.js';
import { Writable } from 'node:stream';

export const CLI = resolve(import.meta.dirname, '../../dist/cli.js');

/** A fresh temp folder, removed when the test ends. */
export async function tempDir(prefix = 'tessera-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Runs the real `tessera` binary to completion. */
export function runCli(args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...opts.env }, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolvePromise({ code: code ?? -1, stdout, stderr }));
  });
}

/** A node data directory, initialised with ports 0, optionally with extra tessera.json keys. */
export async function nodeDir(opts: { name?: string; config?: Record<string, unknown> } = {}): Promise<{ dir: string; id: string }> {
  const dir = join(await tempDir(), 'node');
  const pair = await initDataDir(dir, { name: opts.name ?? 'node', listen: '127.0.0.1:0', api: '127.0.0.1:0' });
  if (opts.config) {
    await writeFile(join(dir, 'tessera.json'), JSON.stringify({ name: opts.name ?? 'node', listen: '127.0.0.1:0', api: '127.0.0.1:0', ...opts.config }));
  }
  return { dir, id: pair.id };
}

export interface SpawnedNode {
  readonly child: ChildProcess;
  readonly id: string;
  readonly peer: string;
  readonly api: string;
  readonly lines: Record<string, unknown>[];
  /** Resolves with the first log line matching, waiting up to `timeoutMs`. */
  waitFor(pred: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts `tessera start --data DIR` as a child process and waits for its listening line. */
export async function spawnNode(dir: string, env: NodeJS.ProcessEnv = {}): Promise<SpawnedNode> {
  const child = spawn(process.execPath, [CLI, 'start', '--data', dir], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  onTestFinished(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  const lines: Record<string, unknown>[] = [];
  const waiters: { pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = [];
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  createInterface({ input: child.stdout! }).on('line', (text) => {
    let line: Record<string, unknown>;
    try {
      line = JSON.parse(text) as Record<string, unknown>;
    } catch {
      line = { msg: text };
    }
    lines.push(line);
    for (const w of [...waiters]) if (w.pred(line)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(line); }
  });
  const waitFor = (pred: (l: Record<string, unknown>) => boolean, timeoutMs = 20_000) => {
    const seen = lines.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise<Record<string, unknown>>((res, rej) => {
      const w = { pred, resolve: (l: Record<string, unknown>) => { clearTimeout(t); res(l); } };
      const t = setTimeout(() => { waiters.splice(waiters.indexOf(w), 1); rej(new Error(`timed out waiting for a log line; stderr: ${stderr}`)); }, timeoutMs);
      waiters.push(w);
    });
  };
  const listening = await Promise.race([
    waitFor((l) => l.msg === 'listening'),
    exited.then((code) => { throw new Error(`tessera start exited with ${code}: ${stderr}`); }),
  ]);
  return {
    child,
    id: String(listening.id),
    peer: String(listening.peer),
    api: String(listening.api),
    lines,
    waitFor,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** A silent logger that keeps its lines for assertions. */
export function memoryLogger(level = 'debug') {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { log: createLogger({ level, destination: stream }), lines };
}

/** Starts a daemon in this process on a fresh data dir; stopped when the test ends. */
export async function startDaemon(opts: { dir?: string; name?: string; config?: Record<string, unknown>; now?: () => number } = {}) {
  const dir = opts.dir ?? (await nodeDir({ name: opts.name ?? 'node', config: opts.config ?? {} })).dir;
  const { log, lines } = memoryLogger();
  const daemon = await Daemon.start({ dataDir: dir, log, ...(opts.now ? { now: opts.now } : {}) });
  onTestFinished(() => daemon.stop());
  return { daemon, dir, lines, api: `http://127.0.0.1:${daemon.apiAddress.port}` };
}

export async function writePeers(dir: string, body: unknown): Promise<void> {
  await mkdir(dir, { recursive: true });
  const tmp = join(dir, `.peers.${Math.random().toString(36).slice(2)}.tmp`);
  await writeFile(tmp, JSON.stringify(body, null, 2));
  const { rename } = await import('node:fs/promises');
  await rename(tmp, join(dir, 'peers.json'));
}

/** Opens a stopped node's store through the Store API (to read it, or to leave what a crash would have), then closes it. */
export async function withStore<T>(dir: string, fn: (store: Store) => Promise<T>): Promise<T> {
  const store = await Store.open(join(dir, STORE_DIR), { durability: 'fsync', log: createLogger({ level: 'silent' }) });
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}
