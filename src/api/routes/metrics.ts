import { Registry, Gauge, Histogram, collectDefaultMetrics } from 'prom-client';
import type { Route } from '../server.js';
import { HttpError } from '../http.js';

/** Seconds: fine below 10 ms (an fsync, one edit's way through a node), coarse up to seconds (a node that cannot keep up). */
const SECONDS = [0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/**
 * How long the steps of an edit take on this node, observed as they happen:
 * where latency goes (a slow disk shows in commits, a slow peer path in
 * receives), without a profiler.
 */
export class Timings {
  readonly #commit = new Observed('tessera_store_commit_seconds', 'Store group commits: one atomic batch written and (durability fsync) synced');
  readonly #write = new Observed('tessera_local_write_seconds', 'Updates from local apps: from arrival to signed, durable and handed to peers');
  readonly #receive = new Observed('tessera_receive_seconds', 'Envelope messages from peers: from arrival to checked, verified, durable and applied');

  readonly commit = (seconds: number): void => this.#commit.observe(seconds);
  readonly write = (seconds: number): void => this.#write.observe(seconds);
  readonly receive = (seconds: number): void => this.#receive.observe(seconds);

  register(registry: Registry): void {
    for (const o of [this.#commit, this.#write, this.#receive]) registry.registerMetric(o.histogram);
  }
}

/** Observations kept before they are handed to the histogram anyway. */
const MAX_WAITING = 4096;

/**
 * A histogram fed off the path of an edit: an observation is kept as a
 * number and handed to prom-client within a second (a timer that holds
 * nothing up), when /metrics is read (its collect hook: a scrape sees every
 * observation made before it), or once MAX_WAITING are waiting.
 */
class Observed {
  readonly histogram: Histogram;
  readonly #waiting: number[] = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(name: string, help: string) {
    this.histogram = new Histogram({ name, help, buckets: SECONDS, registers: [], collect: () => this.#flush() });
  }

  observe(seconds: number): void {
    if (this.#waiting.push(seconds) >= MAX_WAITING) this.#flush();
    else this.#timer ??= setTimeout(() => this.#flush(), 1000).unref();
  }

  #flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const s of this.#waiting) this.histogram.observe(s);
    this.#waiting.length = 0;
  }
}

/** What the metrics are read from at scrape time. */
export interface MetricsSource {
  readonly timings: Timings;
  sessionsByState(): Record<string, number>;
  handshakes(): ReadonlyMap<string, number>;
  envelopes(): { in: number; out: number; refused: ReadonlyMap<string, number>; bytesIn: number; bytesOut: number };
  lagByPeer(): Promise<ReadonlyMap<string, number>>;
  docs(): { stored: number; loaded: number };
  alarms(): number;
  /** Long-lived app connections (WebSockets, event streams): open now, and refused beyond the bound since start. */
  appConnections(): { open: number; refused: number };
  /** Update bodies: bytes held now, and requests refused beyond the budget since start. */
  bodies(): { held: number; refused: number };
}

/**
 * `GET /metrics` (a `read:**` token): Prometheus text. Labels carry peer ids
 * and reasons, never document names.
 */
export function metricsRoute(source: MetricsSource): Route {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'tessera_', eventLoopMonitoringPrecision: 20 });
  source.timings.register(registry);
  const sessions = new Gauge({ name: 'tessera_peer_sessions', help: 'Configured peers by session state', labelNames: ['state'], registers: [registry] });
  const handshakes = new Gauge({ name: 'tessera_handshakes_total', help: 'Handshakes by result (ok, or the refusal reason)', labelNames: ['result'], registers: [registry] });
  const envIn = new Gauge({ name: 'tessera_envelopes_received_total', help: 'Envelopes accepted from peers', registers: [registry] });
  const envOut = new Gauge({ name: 'tessera_envelopes_sent_total', help: 'Envelopes sent to peers', registers: [registry] });
  const refused = new Gauge({ name: 'tessera_envelopes_refused_total', help: 'Envelopes refused, by reason', labelNames: ['reason'], registers: [registry] });
  const bytes = new Gauge({ name: 'tessera_envelope_bytes_total', help: 'Envelope bytes by direction', labelNames: ['direction'], registers: [registry] });
  const lag = new Gauge({ name: 'tessera_replication_lag_envelopes', help: 'Envelopes held here that a peer is not known to hold', labelNames: ['peer'], registers: [registry] });
  const docs = new Gauge({ name: 'tessera_documents', help: 'Documents stored and loaded in memory', labelNames: ['where'], registers: [registry] });
  const alarms = new Gauge({ name: 'tessera_alarms', help: 'Open alarms (equivocation, conflicting envelopes)', registers: [registry] });
  const apps = new Gauge({ name: 'tessera_app_connections', help: 'App WebSockets and event streams open on the local API', registers: [registry] });
  const appsRefused = new Gauge({ name: 'tessera_app_connections_refused_total', help: 'App connections refused beyond maxAppConnections or maxAppConnectionsPerToken', registers: [registry] });
  const bodyBytes = new Gauge({ name: 'tessera_api_body_bytes', help: 'Bytes of update bodies the local API holds now (read or announced, not yet durable)', registers: [registry] });
  const bodiesRefused = new Gauge({ name: 'tessera_api_bodies_refused_total', help: 'Update requests answered 503 busy: the body budget was full', registers: [registry] });
  return {
    method: 'GET',
    path: '/metrics',
    handler: async ({ res, grant }) => {
      if (!grant.scopes.includes('read:**')) throw new HttpError(403, 'forbidden', 'metrics need a read:** token');
      sessions.reset();
      for (const [state, n] of Object.entries(source.sessionsByState())) sessions.set({ state }, n);
      handshakes.reset();
      for (const [result, n] of source.handshakes()) handshakes.set({ result }, n);
      const e = source.envelopes();
      envIn.set(e.in);
      envOut.set(e.out);
      refused.reset();
      for (const [reason, n] of e.refused) refused.set({ reason }, n);
      bytes.set({ direction: 'in' }, e.bytesIn);
      bytes.set({ direction: 'out' }, e.bytesOut);
      lag.reset();
      for (const [peer, n] of await source.lagByPeer()) lag.set({ peer }, n);
      const d = source.docs();
      docs.set({ where: 'stored' }, d.stored);
      docs.set({ where: 'loaded' }, d.loaded);
      alarms.set(source.alarms());
      const a = source.appConnections();
      apps.set(a.open);
      appsRefused.set(a.refused);
      const b = source.bodies();
      bodyBytes.set(b.held);
      bodiesRefused.set(b.refused);
      const text = await registry.metrics();
      res.writeHead(200, { 'content-type': registry.contentType, 'cache-control': 'no-store' });
      res.end(text);
    },
  };
}
