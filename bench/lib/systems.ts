import { mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import { profileDir, type BenchContext } from '../rows/context.js';
import { startBaseline } from './baseline.js';
import { connectApp, type App } from './clients.js';
import { ownEnvelopes, startChain, stopAll, type BenchNode } from './tessera.js';

/** Where an app connects: a y-websocket server URL and, for Tessera, its token. */
export interface Endpoint {
  readonly url: string;
  readonly token?: string;
}

/**
 * Two places for apps to meet: node A and node B of Tessera (linked peers,
 * each its own process), or one y-websocket server for both apps.
 */
export interface Pair {
  readonly label: string;
  readonly a: Endpoint;
  readonly b: Endpoint;
  /** Tessera only: envelopes A signed for the given documents. */
  readonly envelopes?: (docs?: ReadonlySet<string>) => Promise<number>;
  readonly nodes?: readonly BenchNode[];
  /** The server processes: Tessera's nodes, A first, or the one y-websocket server. */
  readonly pids: readonly number[];
  /** Where this system's CPU profiles go, when profiling. */
  readonly profileDir?: string | undefined;
  stop(): Promise<void>;
}

export type SystemKind = 'tessera' | 'memory' | 'leveldb';

export const SYSTEM_LABEL: Record<SystemKind, string> = {
  tessera: 'Tessera (2 nodes)',
  memory: 'y-websocket (in memory)',
  leveldb: 'y-websocket + y-leveldb',
};

/**
 * Starts a fresh system of the given kind; `tag` names its profile folder.
 * Tessera runs as a chain of `length` nodes (2 by default), A its first
 * and B its last, each with `config` in its tessera.json.
 */
export async function startPair(ctx: BenchContext, kind: SystemKind, tag: string, length = 2, config: Record<string, unknown> = {}): Promise<Pair> {
  const prof = await profileDir(ctx, `${tag}-${kind}${kind === 'tessera' && length !== 2 ? length : ''}${Object.keys(config).length ? '-' + Object.values(config).join('-') : ''}`);
  if (kind === 'tessera') {
    const nodes = await startChain(await mkdtemp(join(ctx.tmp, `${tag}-`)), 'n', length, { cpuProfDir: prof, config });
    const a = nodes[0]!;
    const b = nodes[nodes.length - 1]!;
    return {
      label: length === 2 ? SYSTEM_LABEL[kind] : `Tessera (chain of ${length})`,
      a: { url: a.yjs, token: a.token },
      b: { url: b.yjs, token: b.token },
      envelopes: (docs) => ownEnvelopes(a, docs),
      nodes,
      pids: nodes.map((n) => n.server.pid),
      profileDir: prof,
      stop: () => stopAll(nodes),
    };
  }
  const persistenceDir = kind === 'leveldb' ? await mkdtemp(join(ctx.tmp, `${tag}-ydb-`)) : undefined;
  const base = await startBaseline({ persistenceDir, cpuProfDir: prof });
  return { label: SYSTEM_LABEL[kind], a: { url: base.url }, b: { url: base.url }, pids: [base.server.pid], profileDir: prof, stop: () => base.server.stop() };
}

export function app(end: Endpoint, room: string): App {
  return connectApp(end.url, room, end.token);
}

/** Connects an app on each side of a pair to `room` and waits until both have synced. */
export async function appsOn(pair: Pair, room: string): Promise<{ a: App; b: App; destroy: () => void }> {
  const a = app(pair.a, room);
  const b = app(pair.b, room);
  await Promise.all([a.synced(), b.synced()]);
  return { a, b, destroy: () => (a.destroy(), b.destroy()) };
}
