import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { initDataDir } from '../../src/init.js';
import type { KeyPair } from '../../src/identity/keys.js';
import { readKeyFile } from '../../src/identity/file.js';
import { issueApiToken } from '../../src/tokens/api-token.js';
import { writeFileAtomic } from '../../src/util/files.js';
import { spawnServer, type ChildServer } from './proc.js';
import { until } from './wait.js';

/**
 * The compiled CLI: `npm run bench` builds it first. BENCH_CLI points the
 * harness at another build (a branch, a patched copy) to compare.
 */
export const CLI = resolve(process.env.BENCH_CLI ?? resolve(import.meta.dirname, '../../dist/cli.js'));

/** A Tessera node running `node dist/cli.js start --data DIR` in a child process. */
export interface BenchNode {
  readonly name: string;
  readonly dir: string;
  readonly pair: KeyPair;
  readonly server: ChildServer;
  /** `http://127.0.0.1:PORT` of the local API. */
  readonly api: string;
  /** `ws://127.0.0.1:PORT/v1/yjs`: the y-websocket server URL for providers. */
  readonly yjs: string;
  /** `ws://127.0.0.1:PORT` of the peer listener. */
  readonly peerUrl: string;
  /** A `read:** write:**` local API token. */
  readonly token: string;
  /** ms from spawn to the `listening` line. */
  readonly startedMs: number;
}

/** A fresh data directory with ports 0 (`tessera init` does the same). */
export async function createNodeDir(root: string, name: string, config: Record<string, unknown> = {}): Promise<{ dir: string; pair: KeyPair }> {
  const dir = join(root, name);
  const pair = await initDataDir(dir, { name, listen: '127.0.0.1:0', api: '127.0.0.1:0' });
  if (Object.keys(config).length) await writeFile(join(dir, 'tessera.json'), JSON.stringify({ name, listen: '127.0.0.1:0', api: '127.0.0.1:0', ...config }));
  return { dir, pair };
}

export interface StartOptions {
  /** Write a V8 CPU profile (`--cpu-prof`) into this folder when the node exits. */
  readonly cpuProfDir?: string | undefined;
}

/** Starts a node in a child process and waits for its `listening` line. */
export async function startNode(dir: string, name: string, opts: StartOptions = {}): Promise<BenchNode> {
  const prof = opts.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', opts.cpuProfDir, '--cpu-prof-name', `${name}.cpuprofile`] : [];
  const t0 = performance.now();
  const { server, ready } = await spawnServer([...prof, CLI, 'start', '--data', dir], {
    what: `tessera node ${name}`,
    ready: (line) => {
      if (!line.includes('"msg":"listening"')) return undefined;
      const l = JSON.parse(line) as { api: string; peer: string };
      return { api: l.api, peer: l.peer, at: performance.now() };
    },
  });
  const pair = await readKeyFile(join(dir, 'identity.json'));
  const token = await issueApiToken(pair, { scopes: ['read:**', 'write:**'], ttlMs: 3_600_000 });
  return {
    name,
    dir,
    pair,
    server,
    api: `http://${ready.api}`,
    yjs: `ws://${ready.api}/v1/yjs`,
    peerUrl: `ws://${ready.peer}`,
    token,
    startedMs: ready.at - t0,
  };
}

/** GET a JSON route of a node's API with its token. */
export async function apiJson<T>(node: BenchNode, path: string): Promise<T> {
  const res = await fetch(`${node.api}${path}`, { headers: { authorization: `Bearer ${node.token}` } });
  if (res.status !== 200) throw new Error(`${node.name} GET ${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

/** A histogram of a node's /metrics: its cumulative buckets ([upper bound in seconds, count]), the sum of its observations and their count. */
export interface Observed {
  readonly buckets: readonly (readonly [le: number, count: number])[];
  readonly sum: number;
  readonly count: number;
}

/** The timing histograms of a node's /metrics (tessera_store_commit_seconds, _local_write_, _receive_). */
export async function nodeTimings(node: BenchNode): Promise<{ commit: Observed; write: Observed; receive: Observed }> {
  const res = await fetch(`${node.api}/metrics`, { headers: { authorization: `Bearer ${node.token}` } });
  if (res.status !== 200) throw new Error(`${node.name} GET /metrics: ${res.status}`);
  const text = await res.text();
  const read = (name: string): Observed => {
    const value = (suffix: string) => Number(new RegExp(`^${name}_${suffix} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
    const buckets = [...text.matchAll(new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} (\\S+)$`, 'gm'))].map((m) => [m[1] === '+Inf' ? Infinity : Number(m[1]), Number(m[2])] as const);
    return { buckets, sum: value('sum'), count: value('count') };
  };
  return { commit: read('tessera_store_commit_seconds'), write: read('tessera_local_write_seconds'), receive: read('tessera_receive_seconds') };
}

/**
 * Links nodes in a chain: each dials the next, and every node knows every
 * other as an origin that may write (so the far end trusts what the first
 * one signed though it only hears it through relays), as DESIGN.md §5 asks
 * of a chain. Writes each peers file by rename and SIGHUPs the node, the far
 * end first, each reloaded before the node that dials it (a dial to a node
 * that does not know the dialler yet is refused, and backs off for seconds);
 * then waits until every link is connected on both ends.
 */
export async function linkChain(nodes: readonly BenchNode[]): Promise<void> {
  for (const [i, node] of [...nodes.entries()].reverse()) {
    const others = nodes.filter((other) => other !== node);
    const peers = others.map((other) => ({
      name: other.name,
      id: other.pair.id,
      publicKey: other.pair.publicJwk,
      ...(nodes.indexOf(other) === i + 1 ? { url: other.peerUrl } : {}),
      read: ['**'],
      write: ['**'],
    }));
    await writeFileAtomic(join(node.dir, 'peers.json'), JSON.stringify({ peers, authorities: [] }, null, 2));
    node.server.child.kill('SIGHUP');
    await until(`${node.name} reloaded its peers file`, async () => {
      const status = await apiJson<{ peers: { id: string }[] }>(node, '/v1/status');
      return others.every((o) => status.peers.some((p) => p.id === o.pair.id)) || undefined;
    });
  }
  for (const [i, node] of nodes.entries()) {
    const neighbours = [nodes[i - 1], nodes[i + 1]].filter((n): n is BenchNode => n !== undefined).map((n) => n.pair.id);
    await until(`${node.name} connected to its neighbours`, async () => {
      const status = await apiJson<{ peers: { id: string; state: string }[] }>(node, '/v1/status');
      return neighbours.every((id) => status.peers.some((p) => p.id === id && p.state === 'connected')) || undefined;
    });
  }
}

/** The envelopes the node itself signed for a document (its own feed's seq). */
export async function ownEnvelopes(node: BenchNode, docs?: ReadonlySet<string>): Promise<number> {
  const { docs: list } = await apiJson<{ docs: { name: string; vector: Record<string, number> }[] }>(node, '/v1/docs');
  let n = 0;
  for (const d of list) {
    if (docs && !docs.has(d.name)) continue;
    for (const [feed, seq] of Object.entries(d.vector)) if (feed.startsWith(`${node.pair.id}:`)) n += seq;
  }
  return n;
}

/** Every envelope the node holds, of every origin (the sum of its documents' vectors). */
export async function heldEnvelopes(node: BenchNode): Promise<number> {
  const { docs } = await apiJson<{ docs: { vector: Record<string, number> }[] }>(node, '/v1/docs');
  return docs.reduce((n, d) => n + Object.values(d.vector).reduce((a, b) => a + b, 0), 0);
}

/** Starts `count` fresh nodes named `${prefix}1..n` under `root`, linked in a chain. */
export async function startChain(root: string, prefix: string, count: number, opts: StartOptions & { readonly config?: Record<string, unknown> } = {}): Promise<BenchNode[]> {
  const nodes: BenchNode[] = [];
  try {
    for (let i = 1; i <= count; i++) {
      const { dir } = await createNodeDir(root, `${prefix}${i}`, opts.config);
      nodes.push(await startNode(dir, `${prefix}${i}`, opts));
    }
    await linkChain(nodes);
    return nodes;
  } catch (err) {
    await stopAll(nodes);
    throw err;
  }
}

export async function stopAll(nodes: readonly { server: ChildServer }[]): Promise<void> {
  await Promise.all(nodes.map((n) => n.server.stop()));
}
