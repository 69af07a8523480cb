import { type } from '../lib/clients.js';
import { line, type RowResult } from '../lib/report.js';
import { fmt, ratio, sig } from '../lib/stats.js';
import { app, startPair } from '../lib/systems.js';
import type { BenchContext } from './context.js';
import { measureTyping } from './throughput.js';

const WARMUP = 200;

export interface HopArrival {
  /** Nodes from the writer's to this one, both included (2 = one hop). */
  readonly nodes: number;
  readonly ms: number;
  readonly editsPerSecond: number;
}

/**
 * One chain of `length` Tessera nodes (each dials the next; every node
 * trusts the first as an origin), an app on every node. N edits typed on
 * the first node's app, timed until the app on each later node has them
 * all: every hop count is measured on the same edits in the same run.
 */
async function measureChain(ctx: BenchContext, length: number, edits: number): Promise<HopArrival[]> {
  const pair = await startPair(ctx, 'tessera', 'hops', length);
  const apps = pair.nodes!.map((n) => app({ url: n.yjs, token: n.token }, 'bench/hops'));
  try {
    await Promise.all(apps.map((a) => a.synced()));
    const [writer, ...readers] = apps as [(typeof apps)[0], ...typeof apps];
    await type(writer, WARMUP);
    await Promise.all(readers.map((r) => r.reach(WARMUP)));
    const t0 = performance.now();
    const arrivals = Promise.all(readers.map((r) => r.reach(WARMUP + edits, 900_000)));
    await type(writer, edits);
    return (await arrivals).map((t, i) => ({ nodes: i + 2, ms: sig(t - t0, 4), editsPerSecond: sig((edits / (t - t0)) * 1000, 4) }));
  } finally {
    for (const a of apps) a.destroy();
    await pair.stop();
  }
}

/** Row 4: hops. Reference: the same N edits through one y-websocket server. */
export async function hopsRow(ctx: BenchContext): Promise<RowResult> {
  const n = ctx.opts.hopEdits;
  ctx.say(`row 4: ${n} edits through one y-websocket server (reference)`);
  const base = await measureTyping(ctx, 'memory', n, 'hops');
  ctx.say(`row 4: ${n} edits along a chain of ${ctx.opts.chain} Tessera nodes, an app on each`);
  const chain = await measureChain(ctx, ctx.opts.chain, n);
  const first = chain[0]!;
  const lines = chain.map((c, i) =>
    line(
      i === 0 ? '4 hops' : '',
      `${n} edits on node 1 → all on node ${c.nodes} (${c.nodes - 1} hop${c.nodes > 2 ? 's' : ''})`,
      `${fmt(c.ms, 'ms')} (${fmt(c.editsPerSecond, '/s')})`,
      i === 0 ? `${fmt(base.ms, 'ms')} (1 server)` : '',
      i === 0 ? `${fmt(sig(ratio(c.ms, base.ms)))}× the time` : `${fmt(sig(ratio(c.ms, first.ms)))}× of 1 hop`,
    ),
  );
  return {
    key: 'hops',
    title: '4. Hops',
    data: { edits: n, chain: ctx.opts.chain, arrivals: chain, baselineMemory: base, growth: chain.map((c) => ({ nodes: c.nodes, vsOneHop: sig(ratio(c.ms, first.ms)), vsBaseline: sig(ratio(c.ms, base.ms)) })) },
    lines,
    notes: n < 10_000 ? [`row 4 ran ${n} edits, not the issue's 10,000 (--hop-edits 10000)`] : [],
  };
}
