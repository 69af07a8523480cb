import { rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { ApiServer } from './api/server.js';
import { apiAuthenticator } from './api/auth.js';
import { AppConnections } from './api/app-connections.js';
import { BodyBudget } from './api/body-budget.js';
import type { StatusBody } from './api/routes/status.js';
import { loadNodeConfig, type NodeConfig } from './config/node-config.js';
import { loadPeers } from './config/peers.js';
import { loadGrantsFile } from './config/grants-file.js';
import { ConfigWatcher } from './config/watcher.js';
import { exists, readKeyFile } from './identity/file.js';
import { ConfigError, DataDirInUseError } from './errors.js';
import type { HostPort } from './util/address.js';
import type { KeyPair } from './identity/keys.js';
import { DAEMON_FILE, IDENTITY_FILE, STORE_DIR, initDataDir } from './init.js';
import { PeerManager } from './net/peer-manager.js';
import { Store } from './store/store.js';
import { Policy } from './sync/policy.js';
import { Docs } from './sync/docs.js';
import { SyncService } from './sync/service.js';
import { verifyStore, type VerifyReport } from './sync/verify.js';
import { apiRoutes } from './api/routes/index.js';
import { Timings } from './api/routes/metrics.js';
import { YjsEndpoint, WsClose } from './api/yjs-ws.js';
import { Trust } from './trust/trust.js';
import { peekGrant } from './tokens/grant.js';
import type { ApiGrant } from './tokens/api-token.js';
import type { Alarm } from './api/routes/status.js';
import { formatHostPort } from './util/address.js';
import { writeFileAtomic } from './util/files.js';

/** Update bodies of the largest size (maxUpdateBytes) the local API holds at once, all requests together (half of it for one token). */
const BODY_BUDGET_UPDATES = 4;

export interface DaemonOptions {
  readonly dataDir: string;
  readonly log: Logger;
  /** Injected clock (ms since epoch) for tests; defaults to Date.now. */
  readonly now?: () => number;
}

/** What `daemon.json` holds while a node runs, so the CLI can find it. */
export interface DaemonFile {
  readonly pid: number;
  readonly peer: string;
  readonly api: string;
}

/**
 * One Tessera node: wires identity, config, store, peer sessions and the local
 * API, starting them in order and stopping them in reverse.
 */
export class Daemon {
  readonly #log: Logger;
  readonly #dataDir: string;
  readonly #identity: KeyPair;
  readonly #config: NodeConfig;
  readonly #store: Store;
  readonly #watcher: ConfigWatcher;
  readonly #peers: PeerManager;
  readonly #api: ApiServer;
  readonly #docs: Docs;
  readonly #sync: SyncService;
  readonly #policy: Policy;
  readonly #yjs: YjsEndpoint;
  #stopping: Promise<void> | undefined;

  private constructor(parts: { log: Logger; now: () => number; dataDir: string; identity: KeyPair; config: NodeConfig; store: Store; watcher: ConfigWatcher; peers: PeerManager; api: ApiServer; docs: Docs; sync: SyncService; policy: Policy; yjs: YjsEndpoint }) {
    this.#log = parts.log;
    this.#now = parts.now;
    this.#dataDir = parts.dataDir;
    this.#identity = parts.identity;
    this.#config = parts.config;
    this.#store = parts.store;
    this.#watcher = parts.watcher;
    this.#peers = parts.peers;
    this.#api = parts.api;
    this.#docs = parts.docs;
    this.#sync = parts.sync;
    this.#policy = parts.policy;
    this.#yjs = parts.yjs;
  }

  /** Initialises the data directory if needed, then starts every part in order. */
  static async start(opts: DaemonOptions): Promise<Daemon> {
    const dataDir = resolve(opts.dataDir);
    const log = opts.log;
    const now = opts.now ?? Date.now;
    if (!(await exists(join(dataDir, IDENTITY_FILE)))) {
      const pair = await initDataDir(dataDir);
      log.info({ dataDir, id: pair.id }, 'initialised a new data directory');
    }
    // The store holds every document in clear: a folder made before `tessera init` (0755, say) would show them to every user.
    const mode = (await stat(dataDir)).mode & 0o777;
    if (mode & 0o077) log.warn({ dataDir, mode: `0${mode.toString(8)}` }, 'the data directory is open to other users of this machine; its store holds every document: chmod 700 it');
    const identity = await readKeyFile(join(dataDir, IDENTITY_FILE));
    const config = await loadNodeConfig(dataDir);
    const peersConfig = await loadPeers(config.peersFile, identity.id);
    const grants = await loadGrantsFile(config.grantsFile);
    const timings = new Timings();
    const store = await Store.open(join(dataDir, STORE_DIR), { durability: config.durability, log, onCommit: timings.commit }).catch((err: unknown) => {
      throw err instanceof DataDirInUseError ? new DataDirInUseError(dataDir, ' (its LevelDB store is locked)') : err;
    });
    const cleanup: (() => Promise<void>)[] = [() => store.close()];
    try {
      const watcher = new ConfigWatcher({ peersFile: config.peersFile, grantsFile: config.grantsFile, selfId: identity.id, peers: peersConfig, grants, log, nodeConfig: config });
      let peersNow = peersConfig;
      const trust = new Trust({ store, peers: () => peersNow, log, now });
      await trust.start();
      await trust.addGrants(grants.grants, { presenter: identity.id });
      await trust.addRevocations(grants.revocations, { local: true });
      const peers = new PeerManager({
        identity,
        config,
        peers: peersConfig,
        grants: () => ({ grants: ownFirst(watcher.grants.grants, identity.id), revocations: trust.rawRevocations() }),
        trust,
        log,
        now,
      });
      const policy = new Policy(identity, () => peers.peers, trust, (peer) => peers.sessionGrant(peer));
      const docs = new Docs({
        store,
        identity,
        policy,
        log,
        now,
        maxDocsInMemory: config.maxDocsInMemory,
        maxPendingBytes: config.maxPendingBytes,
        maxHeldBytes: config.maxHeldBytes,
        docIdleTimeoutMs: config.docIdleTimeout,
        snapshotEvery: config.snapshotEvery,
        timings,
      });
      await docs.start();
      await docs.resumeRebuild();
      cleanup.unshift(() => docs.stop());
      const sync = new SyncService({ peers, docs, store, policy, log, announceInterval: config.announceInterval, maxQueuedBytes: config.maxQueuedBytes });
      sync.start();
      await sync.reconcile();
      await peers.start().catch((err: unknown) => {
        throw bindError(err, config.file, '$.listen', config.listen);
      });
      cleanup.unshift(() => peers.stop());
      let daemon: Daemon | undefined;
      const authenticate = apiAuthenticator({ identity, maxTtlMs: config.apiTokenMaxTtl, clockToleranceMs: config.clockTolerance, now });
      // Four updates of the largest size at once: writes queue per document anyway, so more in flight buys nothing.
      const bodies = new BodyBudget(BODY_BUDGET_UPDATES * config.maxUpdateBytes);
      const connections = new AppConnections({ max: config.maxAppConnections, perToken: config.maxAppConnectionsPerToken, log });
      const yjs = new YjsEndpoint({ docs, log, authenticate, allowedOrigins: config.allowedOrigins, maxUpdateBytes: config.maxUpdateBytes, maxQueuedBytes: config.maxQueuedBytes, heartbeatMs: config.heartbeatInterval, now, connections, bodies });
      cleanup.unshift(async () => yjs.stop());
      const routes = apiRoutes({
        docs,
        store,
        log,
        maxQueuedBytes: config.maxQueuedBytes,
        maxUpdateBytes: config.maxUpdateBytes,
        bodies,
        connections,
        nameOf: (origin) => (origin === identity.id ? config.name : (policy.nameOf(origin) ?? null)),
        status: (grant) => daemon!.status(grant),
        verify: () => daemon!.verify(),
        now,
        metrics: {
          timings,
          sessionsByState: () => countBy(peers.status().map((p) => p.state)),
          handshakes: () => peers.handshakes,
          envelopes: () => ({ in: sync.counters.envelopesIn, out: sync.counters.envelopesOut, refused: sync.counters.refused, bytesIn: sync.counters.bytesIn, bytesOut: sync.counters.bytesOut }),
          lagByPeer: () => sync.lagByPeer(),
          docs: () => ({ stored: docs.count, loaded: docs.loadedCount }),
          alarms: () => daemon!.alarms.length,
          appConnections: () => ({ open: connections.open, refused: connections.refused }),
          bodies: () => ({ held: bodies.held, refused: bodies.refused }),
        },
      });
      const api = new ApiServer({
        address: config.api,
        headersTimeoutMs: config.handshakeTimeout,
        allowedOrigins: config.allowedOrigins,
        log,
        authenticate,
        routes,
        upgrade: (req, socket, head, url, rawPath) => yjs.upgrade(req, socket, head, url, rawPath),
      });
      await api.start().catch((err: unknown) => {
        throw bindError(err, config.file, '$.api', config.api);
      });
      cleanup.unshift(() => api.stop());
      daemon = new Daemon({ log, now, dataDir, identity, config, store, watcher, peers, api, docs, sync, policy, yjs });
      const d = daemon;
      docs.on('alarm', (alarm) => d.#raise(alarm));
      // What follows a reload runs one reload at a time, in order: two quick saves must not interleave their trust refreshes.
      let applying: Promise<void> = Promise.resolve();
      const apply = (what: string, work: () => Promise<void>) => {
        applying = applying.then(work).catch((err: unknown) => log.error({ err }, `applying the new ${what} failed`));
      };
      watcher.on('peers', (next, diff) => {
        peersNow = next;
        peers.applyPeers(next, diff);
        apply('peers file', async () => {
          await trust.refresh();
          await peers.recheck();
          await sync.refresh();
        });
      });
      watcher.on('grants', (file) => {
        apply('grants file', async () => {
          await trust.addGrants(file.grants, { presenter: identity.id });
          await trust.addRevocations(file.revocations, { local: true });
          sync.sendGrants(file.grants, trust.rawRevocations());
          d.#checkOwnGrant();
        });
      });
      docs.on('rebuilt', (doc) => yjs.closeDoc(doc, WsClose.reload, 'document rebuilt after a revocation; reload'));
      d.#checkOwnGrant();
      d.#grantTimer = setInterval(() => d.#checkOwnGrant(), 3_600_000).unref();
      watcher.start();
      await daemon.#writeDaemonFile();
      log.info({ id: identity.id, name: config.name, peer: formatHostPort(peers.address), api: formatHostPort(api.address), dataDir }, 'listening');
      return daemon;
    } catch (err) {
      for (const stop of cleanup) await stop();
      throw err;
    }
  }

  get id() {
    return this.#identity.id;
  }

  get config(): NodeConfig {
    return this.#config;
  }

  /** The peer sessions (for tests and the sync layer). */
  get peerManager(): PeerManager {
    return this.#peers;
  }

  get peerAddress() {
    return this.#peers.address;
  }

  get apiAddress() {
    return this.#api.address;
  }

  /** The documents of this node (for tests and the local API). */
  get docs(): Docs {
    return this.#docs;
  }

  /** The grants and revocations this node holds (for tests). */
  get trust(): Trust {
    return this.#policy.trust;
  }

  /**
   * `tessera verify`, run by the running node, on a snapshot of its store (it
   * goes on writing meanwhile). Callers while a check runs share its report:
   * each check reads the whole store.
   */
  verify(): Promise<VerifyReport> {
    this.#verifying ??= this.#verifyOnce().finally(() => (this.#verifying = undefined));
    return this.#verifying;
  }

  #verifying: Promise<VerifyReport> | undefined;

  async #verifyOnce(): Promise<VerifyReport> {
    const snapshot = this.#store.snapshot();
    try {
      return await verifyStore(snapshot, (origin) => this.#policy.authorJwk(origin));
    } finally {
      await snapshot.close();
    }
  }

  /** Re-reads the peers and grants files (SIGHUP). */
  reload(): Promise<void> {
    return this.#watcher.reload();
  }

  /** Alarms raised since start (equivocation, conflicting envelopes), newest last, bounded. */
  readonly alarms: Alarm[] = [];

  #raise(alarm: Alarm): void {
    const key = JSON.stringify(alarm);
    if (this.alarms.some((a) => JSON.stringify(a) === key)) return;
    this.alarms.push(alarm);
    if (this.alarms.length > 1000) this.alarms.shift();
    this.#log.error({ doc: alarm.doc, kind: alarm.kind, origins: alarm.origins, peer: alarm.peer }, `alarm: ${alarm.kind}`);
  }

  #grantTimer: NodeJS.Timeout | undefined;
  #ownGrantExp: number | undefined;
  readonly #now: () => number;

  /** This node's own grant: the latest expiry among grants naming it; warns well before it expires. */
  #checkOwnGrant(): void {
    const exps = this.#watcher.grants.grants.map((g) => peekGrant(g)).filter((g) => g?.sub === this.#identity.id).map((g) => g!.exp * 1000);
    this.#ownGrantExp = exps.length ? Math.max(...exps) : undefined;
    if (this.#ownGrantExp === undefined) return;
    const left = this.#ownGrantExp - this.#now();
    const at = new Date(this.#ownGrantExp).toISOString();
    if (left <= 0) this.#log.error({ expiresAt: at }, 'this node\'s grant has expired: peers that admit it by grant will refuse it; put a refreshed grant in the grants file');
    else if (left < this.#config.grantWarning) this.#log.warn({ expiresAt: at }, 'this node\'s grant expires soon; put a refreshed grant in the grants file');
  }

  /** `/v1/status`; alarms only for documents the token may read. */
  async status(grant?: ApiGrant): Promise<StatusBody> {
    return {
      id: this.#identity.id,
      name: this.#config.name,
      peers: this.#peers.status(),
      docs: this.#docs.count,
      pending: this.#docs.pendingCount(),
      grant: this.#ownGrantExp === undefined ? null : { expiresAt: new Date(this.#ownGrantExp).toISOString() },
      alarms: this.alarms.filter((a) => !grant || grant.covers('read', a.doc)),
    };
  }

  async #writeDaemonFile(): Promise<void> {
    const body: DaemonFile = { pid: process.pid, peer: formatHostPort(this.#peers.address), api: formatHostPort(this.#api.address) };
    await writeFileAtomic(join(this.#dataDir, DAEMON_FILE), JSON.stringify(body) + '\n');
  }

  /** Stops accepting, finishes durable writes, closes sessions and the store, removes daemon.json. Safe to call twice. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      this.#watcher.stop();
      clearInterval(this.#grantTimer);
      this.#yjs.stop();
      await this.#api.stop();
      this.#sync.stop();
      await this.#peers.stop();
      await this.#docs.stop();
      await this.#store.close();
      await rm(join(this.#dataDir, DAEMON_FILE), { force: true });
      this.#log.info('stopped');
    })();
    return this.#stopping;
  }
}

/** Grants naming this node first (a listener that admits by grant looks at the first grants message only). */
function ownFirst(grants: readonly string[], self: string): string[] {
  return [...grants].sort((a, b) => Number(peekGrant(b)?.sub === self) - Number(peekGrant(a)?.sub === self));
}

function countBy(values: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of values) out[v] = (out[v] ?? 0) + 1;
  return out;
}

/** A listen failure as a config error naming the key (a port in use, say), not a stack trace. */
function bindError(err: unknown, file: string, path: string, address: HostPort): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') {
    return new ConfigError(file, path, `cannot listen on ${formatHostPort(address)} (${code})`);
  }
  return err;
}
