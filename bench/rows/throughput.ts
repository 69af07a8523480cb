import { type } from '../lib/clients.js';
import { markWindow, monotonicUs } from '../lib/profile.js';
import { line, type RowResult } from '../lib/report.js';
import { fmt, ratio, sig } from '../lib/stats.js';
import { appsOn, startPair, SYSTEM_LABEL, type SystemKind } from '../lib/systems.js';
import type { BenchContext } from './context.js';

const WARMUP = 200;

export interface ThroughputRun {
  readonly edits: number;
  readonly ms: number;
  readonly editsPerSecond: number;
  /** How long the typing app itself took to make the edits (the rest is the wait for B). */
  readonly typedMs: number;
  /** Tessera: envelopes A signed for these edits, and edits per envelope. */
  readonly envelopes?: number;
  readonly editsPerEnvelope?: number;
}

/**
 * N single-character inserts typed by an app on A, timed until an app on B
 * holds them all. Both apps connect and sync, and a warm-up of 200 edits
 * goes through, before the clock starts.
 */
export async function measureTyping(ctx: BenchContext, kind: SystemKind, edits: number, tag = 'throughput', length = 2): Promise<ThroughputRun> {
  const pair = await startPair(ctx, kind, tag, length);
  try {
    const room = `bench/${tag}`;
    const { a, b, destroy } = await appsOn(pair, room);
    try {
      await type(a, WARMUP);
      await b.reach(WARMUP);
      const before = (await pair.envelopes?.(new Set([room]))) ?? 0;
      const from = monotonicUs();
      const t0 = performance.now();
      await type(a, edits);
      const typed = performance.now() - t0;
      const t1 = await b.reach(WARMUP + edits, 600_000);
      const ms = t1 - t0;
      await markWindow(pair.profileDir, [from, monotonicUs()]);
      const run: ThroughputRun = { edits, ms: sig(ms, 4), typedMs: sig(typed, 4), editsPerSecond: sig((edits / ms) * 1000, 4) };
      if (!pair.envelopes) return run;
      const envelopes = (await pair.envelopes(new Set([room]))) - before;
      return { ...run, envelopes, editsPerEnvelope: sig(edits / envelopes, 3) };
    } finally {
      destroy();
    }
  } finally {
    await pair.stop();
  }
}

/** The run with the median rate of several, and the spread of all of them. */
export function medianRun<T extends { editsPerSecond: number }>(runs: readonly T[]): T & { runs: number; minEditsPerSecond: number; maxEditsPerSecond: number } {
  const sorted = [...runs].sort((a, b) => a.editsPerSecond - b.editsPerSecond);
  const mid = sorted[Math.floor((sorted.length - 1) / 2)]!;
  return { ...mid, runs: runs.length, minEditsPerSecond: sorted[0]!.editsPerSecond, maxEditsPerSecond: sorted[sorted.length - 1]!.editsPerSecond };
}

const spread = (r: { runs: number; minEditsPerSecond: number; maxEditsPerSecond: number }) => (r.runs > 1 ? ` (${fmt(r.minEditsPerSecond)}–${fmt(r.maxEditsPerSecond)})` : '');

/**
 * Row 1: edits per second, Tessera against the y-websocket server in memory
 * and with y-leveldb. Each system runs `repeat` times, in a rotating order,
 * and the median run counts (this machine is noisy: a VM with 2 cores).
 */
export async function throughputRow(ctx: BenchContext): Promise<RowResult> {
  const n = ctx.opts.throughputEdits;
  const kinds = ['memory', 'leveldb', 'tessera'] as const;
  const all: Record<SystemKind, ThroughputRun[]> = { memory: [], leveldb: [], tessera: [] };
  for (let r = 0; r < ctx.opts.repeat; r++) {
    for (let k = 0; k < kinds.length; k++) {
      const kind = kinds[(k + r) % kinds.length]!;
      ctx.say(`row 1: ${n} edits through ${SYSTEM_LABEL[kind]} (run ${r + 1} of ${ctx.opts.repeat})`);
      all[kind].push(await measureTyping(ctx, kind, n));
    }
  }
  const t = medianRun(all.tessera);
  const m = medianRun(all.memory);
  const l = medianRun(all.leveldb);
  const vsMemory = sig(ratio(t.editsPerSecond, m.editsPerSecond));
  const vsLeveldb = sig(ratio(t.editsPerSecond, l.editsPerSecond));
  return {
    key: 'throughput',
    title: '1. Throughput',
    data: { edits: n, tessera: t, baselineMemory: m, baselineLeveldb: l, runs: all, ratios: { vsMemory, vsLeveldb }, target: { vsMemory: 1.5 } },
    lines: [
      line('1 throughput', `${n} edits A→B (median of ${ctx.opts.repeat}; range)`, fmt(t.editsPerSecond, 'edits/s') + spread(t), fmt(m.editsPerSecond, 'edits/s') + spread(m), `${fmt(vsMemory)}×`, '≥ 1.5×', vsMemory >= 1.5),
      line('', 'vs y-websocket + y-leveldb', '', fmt(l.editsPerSecond, 'edits/s') + spread(l), `${fmt(vsLeveldb)}×`, '> 1.5×', vsLeveldb > 1.5),
      line('', 'edits per envelope', fmt(t.editsPerEnvelope), '1 message per edit'),
    ],
    notes: [],
  };
}
