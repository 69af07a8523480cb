import { resolve } from 'node:path';
import { spawnServer, type ChildServer } from './proc.js';

const SCRIPT = resolve(import.meta.dirname, 'baseline-server.mjs');

/** The y-websocket server (@y/websocket-server 0.1.1) in a child process. */
export interface Baseline {
  readonly server: ChildServer;
  /** `ws://127.0.0.1:PORT`: the y-websocket server URL for providers. */
  readonly url: string;
  /** `http://127.0.0.1:PORT` (answers `okay` to any GET). */
  readonly http: string;
  /** ms from spawn to its listening line. */
  readonly startedMs: number;
}

/** Starts the baseline; `persistenceDir` switches on its y-leveldb persistence (YPERSISTENCE). */
export async function startBaseline(opts: { persistenceDir?: string | undefined; cpuProfDir?: string | undefined } = {}): Promise<Baseline> {
  const env: NodeJS.ProcessEnv = {};
  if (opts.persistenceDir) env.YPERSISTENCE = opts.persistenceDir;
  else env.YPERSISTENCE = undefined;
  const prof = opts.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', opts.cpuProfDir, '--cpu-prof-name', 'baseline.cpuprofile'] : [];
  const t0 = performance.now();
  const { server, ready } = await spawnServer([...prof, SCRIPT], {
    env,
    what: 'y-websocket server',
    ready: (line) => {
      if (!line.startsWith('{')) return undefined;
      const l = JSON.parse(line) as { msg?: string; port?: number };
      return l.msg === 'listening' ? { port: l.port!, at: performance.now() } : undefined;
    },
  });
  return { server, url: `ws://127.0.0.1:${ready.port}`, http: `http://127.0.0.1:${ready.port}`, startedMs: ready.at - t0 };
}
