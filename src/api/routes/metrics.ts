import { Registry, Gauge, collectDefaultMetrics } from 'prom-client';
import type { Route } from '../server.js';
import { HttpError } from '../http.js';

/** What the metrics are read from at scrape time. */
export interface MetricsSource {
  sessionsByState(): Record<string, number>;
  handshakes(): ReadonlyMap<string, number>;
  envelopes(): { in: number; out: number; refused: ReadonlyMap<string, number>; bytesIn: number; bytesOut: number };
  lagByPeer(): Promise<ReadonlyMap<string, number>>;
  docs(): { stored: number; loaded: number };
  alarms(): number;
}

/**
 * `GET /metrics` (a `read:**` token): Prometheus text. Labels carry peer ids
 * and reasons, never document names.
 */
export function metricsRoute(source: MetricsSource): Route {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'tessera_', eventLoopMonitoringPrecision: 20 });
  const sessions = new Gauge({ name: 'tessera_peer_sessions', help: 'Configured peers by session state', labelNames: ['state'], registers: [registry] });
  const handshakes = new Gauge({ name: 'tessera_handshakes_total', help: 'Handshakes by result (ok, or the refusal reason)', labelNames: ['result'], registers: [registry] });
  const envIn = new Gauge({ name: 'tessera_envelopes_received_total', help: 'Envelopes accepted from peers', registers: [registry] });
  const envOut = new Gauge({ name: 'tessera_envelopes_sent_total', help: 'Envelopes sent to peers', registers: [registry] });
  const refused = new Gauge({ name: 'tessera_envelopes_refused_total', help: 'Envelopes refused, by reason', labelNames: ['reason'], registers: [registry] });
  const bytes = new Gauge({ name: 'tessera_envelope_bytes_total', help: 'Envelope bytes by direction', labelNames: ['direction'], registers: [registry] });
  const lag = new Gauge({ name: 'tessera_replication_lag_envelopes', help: 'Envelopes held here that a peer is not known to hold', labelNames: ['peer'], registers: [registry] });
  const docs = new Gauge({ name: 'tessera_documents', help: 'Documents stored and loaded in memory', labelNames: ['where'], registers: [registry] });
  const alarms = new Gauge({ name: 'tessera_alarms', help: 'Open alarms (equivocation, conflicting envelopes)', registers: [registry] });
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
      const text = await registry.metrics();
      res.writeHead(200, { 'content-type': registry.contentType, 'cache-control': 'no-store' });
      res.end(text);
    },
  };
}
