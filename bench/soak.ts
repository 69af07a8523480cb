/**
 * `npm run soak` (issue 8): a small mesh of real `tessera start` processes
 * under everything at once, for a bounded time (3 minutes by default,
 * `--minutes N` for longer):
 *
 * - three nodes A, B, C (B dials A; C dials A and B), each with a client
 *   writing keys into its own document (a set checker: what was
 *   acknowledged must be there, nothing else may appear), and a bulk
 *   writer on A;
 * - SIGKILL and restart rounds on B and C at random moments, each followed
 *   by the set check on the restarted node;
 * - against A: an authenticated peer flooding announce messages (expect
 *   4020), an authenticated peer that never reads (expect 4021), and churn
 *   of unauthenticated sockets on the peer and API ports (bare TCP,
 *   half-sent requests, upgrades that stop, slowloris trickles);
 * - meanwhile, the revocation scenarios of bench/lib/revocation.ts: D, E, G
 *   joined to the mesh through links the soak cuts, D and G revoked (peers
 *   file, authority) while cut off and writing, and a y-websocket app that
 *   offers their dropped content back.
 *
 * At the end: convergence of every acknowledged write on every node,
 * `tessera verify` of every store, and a summary (writes acknowledged and
 * lost, refused inputs by reason from /metrics, sessions dropped and why
 * from the nodes' logs, peak RSS, write latency under flood, what the
 * revocation scenarios found). Exits 1 if anything acknowledged was lost, a
 * store does not verify, or a revocation check failed.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import * as Y from 'yjs';
import { generateKeyPair, type KeyPair } from '../src/identity/keys.js';
import { createLogger } from '../src/log.js';
import { dialHandshake } from '../src/net/handshake.js';
import { ReplayCache } from '../src/net/replay-cache.js';
import type { Session } from '../src/net/session.js';
import { Close, closeKind } from '../src/protocol/close-codes.js';
import { vectorHash } from '../src/sync/vector.js';
import { writeFileAtomic } from '../src/util/files.js';
import { honestUrl, type MeshNode as SoakNode } from './lib/mesh-node.js';
import { rssOf } from './lib/proc.js';
import { revocationScenario } from './lib/revocation.js';
import { revocationPassed, revocationSummary, type RevocationReport } from './lib/revocation-report.js';
import { quantile } from './lib/stats.js';
import { CLI, createNodeDir, startNode } from './lib/tessera.js';
import { sleep, until } from './lib/wait.js';

const MiB = 1024 * 1024;

const USAGE = `npm run soak -- [--minutes N]   (default 3; SOAK_MINUTES too)`;

/** Every node's tessera.json beyond its name and ports. */
const NODE_CONFIG = {
  handshakeTimeout: '2s',
  reconnectMax: '2s',
  // Below the replicator's 1 MiB high-water mark: with a larger bound (the
  // 32 MiB default) a peer that never reads is not dropped by this bound at
  // all (see the flood tests), so the soak sets it where it works.
  maxQueuedBytes: 768 * 1024,
  maxPeerBytesPerSecond: 8 * MiB,
  maxDocsInMemory: 200,
};

/** A, the node under attack, on top of NODE_CONFIG. */
const VICTIM_CONFIG = {
  maxPeerBytesPerSecond: 512 * 1024,
  maxUnauthenticated: 32,
  // A listens on both stacks: the attackers come from 127.0.0.1, its honest
  // peers from ::1, and the per-address limits (maxUnauthenticatedPerAddress
  // at its default, 8) keep the one from locking the other out. The
  // handshake rate stays high so that the churn goes on all run long.
  handshakesPerMinute: 100_000,
  // So that the peer that never reads meets the queue bound before the
  // heartbeat (which also drops it, for want of a pong).
  heartbeatInterval: '1m',
};

const say = (text: string) => process.stderr.write(`[soak ${new Date().toISOString().slice(11, 19)}] ${text}\n`);

// -------------------------------------------------------------------- run

/** The shared state of the loops: whether to stop, and whether a flood session is up. */
class Run {
  stopping = false;
  flooding = false;
  readonly #stopped: Promise<void>;
  #resolve!: () => void;

  constructor() {
    this.#stopped = new Promise((resolve) => (this.#resolve = resolve));
  }

  stop(): void {
    this.stopping = true;
    this.#resolve();
  }

  /** Waits `ms`, or less if the run stops meanwhile. */
  pause(ms: number): Promise<void> {
    return Promise.race([sleep(ms), this.#stopped]);
  }

  /** Resolves with `p`'s value, or undefined once the run stops. */
  until<T>(p: Promise<T>): Promise<T | undefined> {
    return Promise.race([p, this.#stopped.then(() => undefined)]);
  }
}

// ------------------------------------------------------------------ nodes

/** Names the peers the nodes' logs mention. */
const names = new Map<string, string>();

/** Starts A, B and C on port 0, pins the ports for restarts, links them and waits for the sessions. */
async function startMesh(root: string, attackers: KeyPair[]): Promise<SoakNode[]> {
  const nodes: SoakNode[] = [];
  for (const name of ['A', 'B', 'C']) {
    const config = { ...NODE_CONFIG, ...(name === 'A' ? VICTIM_CONFIG : {}) };
    const victim = name === 'A';
    const { dir, pair } = await createNodeDir(root, name, victim ? { ...config, listen: '[::]:0' } : config);
    const current = await startNode(dir, name);
    nodes.push({ name, dir, pair, current, up: true, ...(victim ? { honestHost: '::1' } : {}) });
    names.set(pair.id, name);
    // A restart comes back on the same ports, so the peers that dial it find it.
    const port = (url: string) => url.split(':').pop();
    await writeFile(join(dir, 'tessera.json'), JSON.stringify({ name, listen: `${victim ? '[::]' : '127.0.0.1'}:${port(current.peerUrl)}`, api: `127.0.0.1:${port(current.api)}`, ...config }));
  }
  const entry = (n: SoakNode, dial: boolean) => ({ name: n.name, id: n.pair.id, publicKey: n.pair.publicJwk, ...(dial ? { url: honestUrl(n) } : {}), read: ['**'], write: ['**'] });
  const [a, b, c] = nodes as [SoakNode, SoakNode, SoakNode];
  const raw = attackers.map((p, i) => ({ name: `attacker${i}`, id: p.id, publicKey: p.publicJwk, read: ['**'], write: ['**'] }));
  const peers: [SoakNode, { id: string }[]][] = [
    [a, [entry(b, false), entry(c, false), ...raw]],
    [b, [entry(a, true), entry(c, false)]],
    [c, [entry(a, true), entry(b, true)]],
  ];
  // One at a time, each reloaded before the next dials it (else an early dial is refused as unknown).
  for (const [node, list] of peers) {
    await writeFileAtomic(join(node.dir, 'peers.json'), JSON.stringify({ peers: list, authorities: [] }, null, 2));
    node.current.server.child.kill('SIGHUP');
    const ids = list.map((e) => e.id);
    await until(`${node.name} reloaded its peers file`, async () => {
      const s = await getJson<{ peers: { id: string }[] }>(node, '/v1/status');
      return ids.every((id) => s?.peers.some((p) => p.id === id)) || undefined;
    });
  }
  for (const node of nodes) {
    const others = nodes.filter((n) => n !== node).map((n) => n.pair.id);
    await until(`${node.name} connected to the mesh`, async () => {
      const s = await getJson<{ peers: { id: string; state: string }[] }>(node, '/v1/status');
      return others.every((id) => s?.peers.some((p) => p.id === id && p.state === 'connected')) || undefined;
    });
  }
  return nodes;
}

async function getJson<T>(node: SoakNode, path: string, timeoutMs = 5000): Promise<T | undefined> {
  const res = await fetch(`${node.current.api}${path}`, { headers: { authorization: `Bearer ${node.current.token}` }, signal: AbortSignal.timeout(timeoutMs) });
  return res.status === 200 ? ((await res.json()) as T) : undefined;
}

// --------------------------------------------------------------- observer

/** What the nodes report: session closes from their logs, counters from /metrics, RSS from /proc. */
class Observer {
  /** `node: code name [peer]` → count. */
  readonly closes = new Map<string, number>();
  /** Counters of finished incarnations, per node and series (`handshake: busy`). */
  readonly #folded = new Map<string, Map<string, number>>();
  readonly #latest = new Map<string, Map<string, number>>();
  readonly rssPeak = new Map<string, number>();
  /** V8 heap in use (live objects and garbage not yet collected), peak and last scrape: next to RSS, tells a leak from a high-water mark. */
  readonly heapPeak = new Map<string, number>();
  readonly heapLast = new Map<string, number>();
  readonly #waiters: { node: string; peer: string; resolve: (code: number) => void }[] = [];

  /** Reads the node's log lines (all of them, from the pipe bench/lib/proc also reads). */
  watch(node: SoakNode): void {
    createInterface({ input: node.current.server.child.stdout! }).on('line', (text) => {
      if (!text.includes('"session closed"')) return;
      let l: { msg?: string; peer?: string; code?: number };
      try {
        l = JSON.parse(text) as typeof l;
      } catch {
        return;
      }
      if (l.msg !== 'session closed' || !l.peer || l.code === undefined) return;
      const key = `${node.name}: ${l.code} ${closeKind(l.code)?.name ?? ''} [${names.get(l.peer) ?? 'unknown'}]`;
      this.closes.set(key, (this.closes.get(key) ?? 0) + 1);
      for (const w of [...this.#waiters]) {
        if (w.node !== node.name || w.peer !== l.peer) continue;
        this.#waiters.splice(this.#waiters.indexOf(w), 1);
        w.resolve(l.code);
      }
    });
  }

  /** The code of the next session close `node` logs for `peer`. */
  nextClose(node: SoakNode, peer: string): Promise<number> {
    return new Promise((resolve) => this.#waiters.push({ node: node.name, peer, resolve }));
  }

  async scrape(node: SoakNode): Promise<void> {
    const incarnation = node.current;
    if (!node.up) return;
    const res = await fetch(`${incarnation.api}/metrics`, { headers: { authorization: `Bearer ${incarnation.token}` }, signal: AbortSignal.timeout(2000) }).catch(() => undefined);
    if (res?.status !== 200) return;
    const text = await res.text();
    // A scrape that outlived its process must not count again for the next one.
    if (node.current !== incarnation || !node.up) return;
    const series = new Map<string, number>();
    for (const line of text.split('\n')) {
      const m = /^tessera_(handshakes_total|envelopes_refused_total)\{(?:result|reason)="([^"]+)"\} (\d+)/.exec(line);
      if (m) series.set(`${m[1] === 'handshakes_total' ? 'handshake' : 'envelope'}: ${m[2]}`, Number(m[3]));
      const rss = /^tessera_process_(?:process_)?resident_memory_bytes (\d+)/.exec(line);
      if (rss) this.#peak(node, Number(rss[1]));
      const heap = /^tessera_nodejs_heap_size_used_bytes (\d+(?:\.\d+)?)/.exec(line);
      if (heap) {
        this.heapLast.set(node.name, Number(heap[1]));
        this.heapPeak.set(node.name, Math.max(this.heapPeak.get(node.name) ?? 0, Number(heap[1])));
      }
    }
    this.#latest.set(node.name, series);
  }

  async sampleRss(node: SoakNode): Promise<void> {
    if (node.up) this.#peak(node, (await rssOf(node.current.server.pid)) ?? 0);
  }

  #peak(node: SoakNode, bytes: number): void {
    this.rssPeak.set(node.name, Math.max(this.rssPeak.get(node.name) ?? 0, bytes));
  }

  /** A node is about to be killed: its last scrape counts toward the totals. */
  fold(node: SoakNode): void {
    const into = this.#folded.get(node.name) ?? new Map<string, number>();
    for (const [k, v] of this.#latest.get(node.name) ?? []) into.set(k, (into.get(k) ?? 0) + v);
    this.#folded.set(node.name, into);
    this.#latest.delete(node.name);
  }

  /** Refused inputs by reason, summed over every node and incarnation (as of each one's last scrape). */
  refusals(): Map<string, number> {
    const out = new Map<string, number>();
    for (const m of [...this.#folded.values(), ...this.#latest.values()]) {
      for (const [k, v] of m) if (k !== 'handshake: ok') out.set(k, (out.get(k) ?? 0) + v);
    }
    return out;
  }
}

// ---------------------------------------------------------------- writers

interface Sample {
  readonly ms: number;
  readonly flood: boolean;
}

/**
 * A client writing one key at a time into its node's document, keeping
 * (and re-sending, merged with the next) what was not acknowledged, as an
 * app does across a node restart.
 */
class SetWriter {
  readonly doc: string;
  readonly attempted = new Set<string>();
  readonly acked = new Set<string>();
  readonly latencies: Sample[] = [];
  failures = 0;
  readonly #node: SoakNode;
  readonly #app = new Y.Doc();
  #unsent: { keys: string[]; updates: Uint8Array[] } = { keys: [], updates: [] };
  #n = 0;

  constructor(node: SoakNode) {
    this.#node = node;
    this.doc = `soak/set-${node.name}`;
  }

  async run(state: Run, everyMs: number): Promise<void> {
    while (!state.stopping) {
      const key = `${this.#node.name}${this.#n++}`;
      this.attempted.add(key);
      let update: Uint8Array | undefined;
      this.#app.once('update', (u: Uint8Array) => (update = u));
      this.#app.getMap('m').set(key, this.#n);
      this.#unsent = { keys: [...this.#unsent.keys, key], updates: [...this.#unsent.updates, update!] };
      const flood = state.flooding;
      const t0 = performance.now();
      const status = await this.#post().catch(() => 0);
      if (status === 200) {
        this.latencies.push({ ms: performance.now() - t0, flood: flood && state.flooding });
        for (const k of this.#unsent.keys) this.acked.add(k);
        this.#unsent = { keys: [], updates: [] };
      } else {
        this.failures++;
      }
      await state.pause(status === 200 ? everyMs : 100);
    }
  }

  async #post(): Promise<number> {
    const res = await fetch(`${this.#node.current.api}/v1/docs/${encodeURIComponent(this.doc)}/updates`, {
      method: 'POST',
      headers: { authorization: `Bearer ${this.#node.current.token}` },
      body: Y.mergeUpdates(this.#unsent.updates),
      signal: AbortSignal.timeout(10_000),
    });
    await res.arrayBuffer();
    return res.status;
  }
}

/** Which acknowledged keys `node` lacks, and which keys it has that were never written. */
async function checkSet(node: SoakNode, w: SetWriter, acked: ReadonlySet<string>): Promise<{ missing: string[]; unexpected: string[] }> {
  const body = await getJson<{ m?: Record<string, unknown> }>(node, `/v1/docs/${encodeURIComponent(w.doc)}`, 20_000).catch(() => undefined);
  const keys = new Set(Object.keys(body?.m ?? {}));
  return { missing: [...acked].filter((k) => !keys.has(k)), unexpected: [...keys].filter((k) => !w.attempted.has(k)) };
}

/** A 32 KiB document written to A every 100 ms: enough for the peer that never reads to fill its queue. */
async function bulkWriter(a: SoakNode, state: Run, acked: string[]): Promise<void> {
  for (let n = 0; !state.stopping; n++) {
    const doc = new Y.Doc();
    doc.getMap('m').set('blob', `${n}:${'b'.repeat(32 * 1024)}`);
    const name = `soak/bulk/${n}`;
    const res = await fetch(`${a.current.api}/v1/docs/${name.replaceAll('/', '%2F')}/updates`, {
      method: 'POST',
      headers: { authorization: `Bearer ${a.current.token}` },
      body: Y.encodeStateAsUpdate(doc),
      signal: AbortSignal.timeout(10_000),
    }).catch(() => undefined);
    if (res?.status === 200) acked.push(name);
    await res?.arrayBuffer();
    await state.pause(100);
  }
}

// -------------------------------------------------------------- attackers

const silent = createLogger({ level: 'silent' });

/** An authenticated session with `node` as `self` (which it lists), through the daemon's own handshake; heartbeats off. */
async function dialRaw(node: SoakNode, self: KeyPair): Promise<Session> {
  const session = await dialHandshake(
    `ws://127.0.0.1:${node.current.peerUrl.split(':').pop()}`,
    { id: node.pair.id, key: node.pair.publicJwk },
    {
      identity: self,
      sessionTtlMs: 3_600_000,
      clockToleranceMs: 30_000,
      handshakeTimeoutMs: 10_000,
      maxPreAuthBytes: 64 * 1024,
      maxFrameBytes: 16 * MiB,
      maxQueuedBytes: 64 * MiB,
      heartbeatMs: 3_600_000,
      maxPeerBytesPerSecond: 1024 * MiB,
      rateLimitWindowMs: 30_000,
      now: Date.now,
      replay: new ReplayCache({ now: Date.now }),
      log: silent,
    },
    () => ({ type: 'grants', grants: [], revocations: [] }),
  );
  await new Promise<void>((resolve, reject) => {
    session.once('ready', () => resolve());
    session.once('close', (code, reason) => reject(new Error(`closed ${code} ${reason}`)));
    session.start();
  });
  return session;
}

interface AttackStats {
  sessions: number;
  refusedDials: number;
  bytes: number;
  /** Close codes as the attacker saw them. */
  readonly closes: Map<number, number>;
}

const newStats = (): AttackStats => ({ sessions: 0, refusedDials: 0, bytes: 0, closes: new Map() });
const bump = (m: Map<number, number>, k: number) => m.set(k, (m.get(k) ?? 0) + 1);

/** Floods A with announce messages of documents it does not hold, as fast as its socket takes them; redials 3 s after each drop. */
async function flooder(a: SoakNode, self: KeyPair, state: Run, stats: AttackStats): Promise<void> {
  const empty = vectorHash({});
  let batch = 0;
  while (!state.stopping) {
    const session = await dialRaw(a, self).catch(() => undefined);
    if (!session) {
      stats.refusedDials++;
      await state.pause(1000);
      continue;
    }
    stats.sessions++;
    const closed = new Promise<number>((resolve) => session.once('close', (code) => resolve(code)));
    state.flooding = true;
    while (!session.closed && !state.stopping) {
      while (session.queuedBytes < MiB && !session.closed) {
        const docs = Array.from({ length: 500 }, (_, i) => [`flood/b${batch}/d${i}-${'x'.repeat(24)}`, empty] as const);
        batch++;
        session.send({ type: 'announce', docs });
        stats.bytes += JSON.stringify(docs).length;
      }
      await sleep(20);
    }
    state.flooding = false;
    if (!session.closed) session.close(Close.normal, 'soak over');
    bump(stats.closes, await closed);
    await state.pause(3000);
  }
}

/** Dials A, stops reading, and waits for A to drop it (its log says why); then again. */
async function slowPeer(a: SoakNode, self: KeyPair, state: Run, stats: AttackStats, observer: Observer): Promise<void> {
  while (!state.stopping) {
    const session = await dialRaw(a, self).catch(() => undefined);
    if (!session) {
      stats.refusedDials++;
      await state.pause(1000);
      continue;
    }
    stats.sessions++;
    const dropped = observer.nextClose(a, self.id);
    session.pause('backlog');
    const code = await state.until(dropped);
    if (code !== undefined) bump(stats.closes, code);
    session.close(Close.normal, 'soak over');
    await state.pause(2000);
  }
}

interface ChurnStats {
  opened: number;
  /** Kind → outcome → count (4015, 4002, "dropped" when closed without a close frame). */
  readonly outcomes: Map<string, Map<string, number>>;
  /** Kind → longest time a socket of that kind was held open by the node, ms. */
  readonly longest: Map<string, number>;
  readonly open: Set<Socket>;
}

/** One hostile socket: writes `first`, then trickles `trickle` a byte every 300 ms, until the node closes it. */
function hostileSocket(port: number, kind: string, first: string, churn: ChurnStats, trickle?: string): void {
  const socket = connect(port, '127.0.0.1');
  churn.opened++;
  churn.open.add(socket);
  socket.on('error', () => undefined);
  const chunks: Buffer[] = [];
  const opened = performance.now();
  let sent = 0;
  const timer = trickle ? setInterval(() => sent < trickle.length && !socket.destroyed && socket.write(trickle[sent++]!), 300) : undefined;
  socket.on('data', (d: Buffer) => chunks.push(d));
  socket.once('connect', () => first && socket.write(first));
  socket.once('close', () => {
    clearInterval(timer);
    if (!churn.open.delete(socket)) return;
    const received = Buffer.concat(chunks);
    const at = received.indexOf('\r\n\r\n');
    const frame = at < 0 ? undefined : received.subarray(at + 4);
    const outcome = frame && frame.length >= 4 && (frame[0]! & 0x0f) === 0x8 ? String(frame.readUInt16BE(2)) : received.length ? `closed after ${received.toString('latin1', 9, 12)}` : 'dropped';
    const byKind = churn.outcomes.get(kind) ?? new Map<string, number>();
    byKind.set(outcome, (byKind.get(outcome) ?? 0) + 1);
    churn.outcomes.set(kind, byKind);
    churn.longest.set(kind, Math.max(churn.longest.get(kind) ?? 0, performance.now() - opened));
  });
}

function upgradeRequest(port: number): string {
  const key = Buffer.from(Array.from({ length: 16 }, () => Math.floor(Math.random() * 256))).toString('base64');
  return `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: tessera.v1\r\n\r\n`;
}

/** Every 4 s, 100 unauthenticated sockets at A's peer port and API port. */
async function churner(a: SoakNode, state: Run, churn: ChurnStats): Promise<void> {
  const peer = Number(a.current.peerUrl.split(':').pop());
  const api = Number(a.current.api.split(':').pop());
  const get = `GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1:${api}\r\nAuthorization: Bearer x\r\n\r\n`;
  while (!state.stopping) {
    for (let i = 0; i < 20; i++) hostileSocket(peer, 'peer: bare TCP', '', churn);
    for (let i = 0; i < 15; i++) hostileSocket(peer, 'peer: half-sent upgrade', upgradeRequest(peer).slice(0, 60), churn);
    for (let i = 0; i < 40; i++) hostileSocket(peer, 'peer: upgrade, then silence', upgradeRequest(peer), churn);
    for (let i = 0; i < 3; i++) hostileSocket(peer, 'peer: slowloris', '', churn, upgradeRequest(peer));
    for (let i = 0; i < 10; i++) hostileSocket(api, 'api: bare TCP', '', churn);
    for (let i = 0; i < 9; i++) hostileSocket(api, 'api: half-sent request', get.slice(0, 30), churn);
    for (let i = 0; i < 3; i++) hostileSocket(api, 'api: slowloris', '', churn, get);
    await state.pause(4000);
  }
}

// ------------------------------------------------------------ kill rounds

interface RoundStats {
  rounds: number;
  lostAfterRestart: number;
  unexpectedAfterRestart: number;
}

/** Every 3 to 8 s, SIGKILLs B or C (in turn), restarts it, and checks its writer's acknowledged keys on it. */
async function killer(victims: SoakNode[], writers: Map<string, SetWriter>, state: Run, observer: Observer, stats: RoundStats): Promise<void> {
  while (!state.stopping) {
    await state.pause(1000 + Math.random() * 3000);
    if (state.stopping) break;
    const node = victims[stats.rounds % victims.length]!;
    await observer.scrape(node);
    observer.fold(node);
    node.up = false;
    const exited = new Promise((resolve) => node.current.server.child.once('exit', resolve));
    node.current.server.child.kill('SIGKILL');
    await exited;
    const w = writers.get(node.name)!;
    const acked = new Set(w.acked);
    node.current = await startNode(node.dir, node.name);
    node.up = true;
    observer.watch(node);
    const { missing, unexpected } = await checkSet(node, w, acked);
    stats.rounds++;
    stats.lostAfterRestart += missing.length;
    stats.unexpectedAfterRestart += unexpected.length;
    if (missing.length || unexpected.length) say(`round ${stats.rounds} on ${node.name}: ${missing.length} acknowledged keys missing, ${unexpected.length} unexpected`);
  }
}

// ------------------------------------------------------------ convergence

interface Tally {
  /** Acknowledged keys missing on some node (each node counted). */
  missing: number;
  /** Keys present on some node that no client ever wrote. */
  unexpected: number;
}

/** Every acknowledged key of every writer, and every bulk document, on every node. */
async function tally(nodes: readonly SoakNode[], writers: ReadonlyMap<string, SetWriter>, acked: ReadonlyMap<string, ReadonlySet<string>>, bulk: readonly string[]): Promise<Tally> {
  const out: Tally = { missing: 0, unexpected: 0 };
  for (const node of nodes) {
    for (const [name, w] of writers) {
      const r = await checkSet(node, w, acked.get(name)!);
      out.missing += r.missing.length;
      out.unexpected += r.unexpected.length;
    }
    const list = await getJson<{ docs: { name: string }[] }>(node, '/v1/docs', 20_000).catch(() => undefined);
    const held = new Set(list?.docs.map((d) => d.name));
    out.missing += bulk.filter((d) => !held.has(d)).length;
  }
  return out;
}

/** Waits (up to 2 minutes) until nothing acknowledged is missing anywhere; returns the last tally. */
async function converge(nodes: readonly SoakNode[], writers: ReadonlyMap<string, SetWriter>, bulk: readonly string[]): Promise<Tally> {
  const acked = new Map([...writers].map(([name, w]) => [name, new Set(w.acked)]));
  let last = await tally(nodes, writers, acked, bulk);
  await until('convergence', async () => ((last = await tally(nodes, writers, acked, bulk)).missing === 0 ? true : undefined), { timeoutMs: 120_000, intervalMs: 1000 }).catch(() => undefined);
  return last;
}

async function verifyStore(dir: string): Promise<string> {
  return new Promise((resolve) => execFile(process.execPath, [CLI, 'verify', '--data', dir], (err, stdout) => resolve(`${err ? 'FAILED' : 'verified'} (${stdout.trim().split('\n').pop() ?? ''})`)));
}

// ---------------------------------------------------------------- summary

/** Everything the summary reports. */
interface Outcome {
  readonly minutes: number;
  readonly writers: ReadonlyMap<string, SetWriter>;
  readonly bulk: readonly string[];
  readonly final: Tally;
  readonly rounds: RoundStats;
  readonly verified: readonly string[];
  readonly observer: Observer;
  readonly flood: AttackStats;
  readonly slow: AttackStats;
  readonly churn: ChurnStats;
  readonly leftover: number;
  readonly revocation: RevocationReport;
}

function percentiles(samples: readonly number[]): string {
  if (!samples.length) return 'no samples';
  const p = (q: number) => quantile(samples, q).toFixed(1);
  return `p50 ${p(0.5)}  p95 ${p(0.95)}  p99 ${p(0.99)}  max ${p(1)} ms  (n=${samples.length})`;
}

const sorted = <V>(m: Map<string, V>) => [...m].sort(([a], [b]) => a.localeCompare(b));
const codes = (m: Map<number, number>) => JSON.stringify(Object.fromEntries(m));

function summary(o: Outcome): string[] {
  const w = [...o.writers.values()];
  const a = o.writers.get('A')!.latencies;
  const others = w.filter((x) => x !== o.writers.get('A')).flatMap((x) => x.latencies.map((s) => s.ms));
  return [
    '',
    `Tessera soak: ${o.minutes.toFixed(1)} min, 3 nodes (A flooded and besieged; B, C killed in turn) and D, E, G for the revocation scenarios, node ${process.version}`,
    `writes acknowledged: ${w.reduce((n, x) => n + x.acked.size, 0) + o.bulk.length} (${w.map((x) => `${x.doc} ${x.acked.size}/${x.attempted.size}`).join(', ')}, bulk docs on A ${o.bulk.length}); refused or failed attempts ${w.reduce((n, x) => n + x.failures, 0)}`,
    `lost: ${lost(o)} (after convergence ${o.final.missing}, at restart checks ${o.rounds.lostAfterRestart}); never written but present: ${o.final.unexpected + o.rounds.unexpectedAfterRestart}`,
    `SIGKILL/restart rounds: ${o.rounds.rounds}`,
    `stores: ${o.verified.join('; ')}`,
    'refused inputs by reason (/metrics, summed over nodes and restarts; handshakes include failed dials):',
    ...sorted(o.observer.refusals()).map(([k, v]) => `  ${k}: ${v}`),
    'sessions dropped, as each node logged them (node: code name [peer]):',
    ...sorted(o.observer.closes).map(([k, v]) => `  ${k}: ${v}`),
    `flooder: ${o.flood.sessions} sessions, ~${Math.round(o.flood.bytes / MiB)} MiB of announces sent, dials refused ${o.flood.refusedDials}, closes seen ${codes(o.flood.closes)}`,
    `slow peer: ${o.slow.sessions} sessions, dials refused ${o.slow.refusedDials}, dropped by A with ${codes(o.slow.closes)}`,
    `unauthenticated sockets: ${o.churn.opened} opened against A (${o.leftover} still open when the load stopped), outcomes:`,
    ...sorted(o.churn.outcomes).map(([k, m]) => `  ${k}: ${JSON.stringify(Object.fromEntries(m))}; held at most ${((o.churn.longest.get(k) ?? 0) / 1000).toFixed(1)} s`),
    `peak RSS: ${sorted(o.observer.rssPeak).map(([k, v]) => `${k} ${Math.round(v / MiB)} MiB`).join(', ')}`,
    `V8 heap used, peak / at the end: ${sorted(o.observer.heapPeak).map(([k, v]) => `${k} ${Math.round(v / MiB)} / ${Math.round((o.observer.heapLast.get(k) ?? 0) / MiB)} MiB`).join(', ')}`,
    'write latency (POST to acknowledgement, fsync):',
    `  on A while the flooder is connected: ${percentiles(a.filter((s) => s.flood).map((s) => s.ms))}`,
    `  on A otherwise:                      ${percentiles(a.filter((s) => !s.flood).map((s) => s.ms))}`,
    `  on B and C (across restarts):        ${percentiles(others)}`,
    ...revocationSummary(o.revocation),
  ];
}

const lost = (o: Outcome) => o.final.missing + o.rounds.lostAfterRestart;
const passed = (o: Outcome) => lost(o) === 0 && o.final.unexpected + o.rounds.unexpectedAfterRestart === 0 && o.verified.every((v) => v.includes(' verified (')) && revocationPassed(o.revocation);

// -------------------------------------------------------------------- main

function parseMinutes(): number | undefined {
  const { values } = parseArgs({ options: { minutes: { type: 'string' }, help: { type: 'boolean' } } });
  if (values.help) return undefined;
  const minutes = Number(values.minutes ?? process.env.SOAK_MINUTES ?? 3);
  if (!(minutes > 0)) throw new Error(`--minutes must be a positive number\n${USAGE}`);
  return minutes;
}

async function main(): Promise<number> {
  const minutes = parseMinutes();
  if (minutes === undefined) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  const root = await mkdtemp(join(tmpdir(), 'tessera-soak-'));
  const [floodKey, slowKey] = [await generateKeyPair(), await generateKeyPair()];
  names.set(floodKey.id, 'flooder');
  names.set(slowKey.id, 'slow peer');
  say(`starting A, B, C in ${root}`);
  const nodes = await startMesh(root, [floodKey, slowKey]);
  const [a, b, c] = nodes as [SoakNode, SoakNode, SoakNode];
  const observer = new Observer();
  for (const n of nodes) observer.watch(n);
  const sampler = setInterval(() => nodes.forEach((n) => void observer.sampleRss(n)), 250);
  const scraper = setInterval(() => nodes.forEach((n) => void observer.scrape(n)), 2000);

  const state = new Run();
  const writers = new Map(nodes.map((n) => [n.name, new SetWriter(n)]));
  const bulk: string[] = [];
  const [flood, slow] = [newStats(), newStats()];
  const churn: ChurnStats = { opened: 0, outcomes: new Map(), longest: new Map(), open: new Set() };
  const rounds: RoundStats = { rounds: 0, lostAfterRestart: 0, unexpectedAfterRestart: 0 };
  say(`running for ${minutes} min: writers on A, B, C; bulk writes on A; flood, slow peer and socket churn against A; SIGKILL rounds on B and C; revocation scenarios`);
  const started = performance.now();
  const loops = [
    ...[...writers.values()].map((w) => w.run(state, 20)),
    bulkWriter(a, state, bulk),
    flooder(a, floodKey, state, flood),
    slowPeer(a, slowKey, state, slow, observer),
    churner(a, state, churn),
    killer([b, c], writers, state, observer, rounds),
  ];
  const revoking = revocationScenario({ root, mesh: [a, b, c], config: NODE_CONFIG, names, say });
  const progress = setInterval(() => say(`${Math.round((performance.now() - started) / 1000)} s: ${acknowledged(writers)} writes acknowledged, ${rounds.rounds} kill rounds, ${flood.sessions} flood sessions, ${slow.sessions} slow-peer sessions, ${churn.opened} hostile sockets`), 15_000);
  await sleep(minutes * 60_000);
  state.stop();
  say('stopping the load; waiting for the loops to finish');
  await Promise.all(loops);
  clearInterval(progress);
  const elapsed = (performance.now() - started) / 60_000;
  const leftover = [...churn.open];
  churn.open.clear();
  for (const s of leftover) s.destroy();
  say('waiting for the revocation scenarios to finish');
  const revocation = await revoking;

  say('waiting for every acknowledged write to reach every node');
  const final = await converge(nodes, writers, bulk);
  for (const n of nodes) await observer.scrape(n);
  clearInterval(sampler);
  clearInterval(scraper);
  await Promise.all(nodes.map((n) => n.current.server.stop()));
  const verified = await Promise.all([...nodes, ...revocation.dirs].map(async (n) => `${n.name} ${await verifyStore(n.dir)}`));
  const outcome: Outcome = { minutes: elapsed, writers, bulk, final, rounds, verified, observer, flood, slow, churn, leftover: leftover.length, revocation };
  process.stdout.write(summary(outcome).join('\n') + '\n');
  await rm(root, { recursive: true, force: true });
  return passed(outcome) ? 0 : 1;
}

const acknowledged = (writers: ReadonlyMap<string, SetWriter>) => [...writers.values()].reduce((n, w) => n + w.acked.size, 0);

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`soak failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(2);
  },
);
