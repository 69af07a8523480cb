import { type App } from '../lib/clients.js';
import { measureFloor, type Floor } from '../lib/floor.js';
import { measureRelayHops, type RelayHops } from '../lib/relay.js';
import { line, type RowResult } from '../lib/report.js';
import { fmt, median, quantile, ratio, sig } from '../lib/stats.js';
import { appsOn, startPair, SYSTEM_LABEL, type SystemKind } from '../lib/systems.js';
import { sleep } from '../lib/wait.js';
import type { BenchContext } from './context.js';

const WARMUP = 200;

export interface LatencyRun {
  readonly edits: number;
  readonly rate: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** One edit at a time, each after the previous arrived: the unloaded latency. */
  readonly unloadedP50Ms: number;
  readonly unloadedP99Ms: number;
}

/** Records when the edit at each position arrives in `b`'s text (the k-th edit makes it k+1 long). */
function arrivals(b: App, offset: number): { at: number[]; stop: () => void } {
  const at: number[] = [];
  const on = () => {
    const now = performance.now();
    for (let i = at.length; i < b.text.length - offset; i++) at.push(now);
  };
  b.doc.on('update', on);
  return { at, stop: () => b.doc.off('update', on) };
}

async function paced(a: App, b: App, rate: number, seconds: number): Promise<number[]> {
  const n = Math.round(rate * seconds);
  const sent: number[] = [];
  const got = arrivals(b, a.text.length);
  const t0 = performance.now();
  for (let k = 0; k < n; k++) {
    const due = t0 + (k * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0.5) await sleep(wait);
    sent.push(performance.now());
    a.text.insert(a.text.length, 'x');
  }
  await b.reach(a.text.length, 120_000);
  got.stop();
  return sent.map((t, k) => got.at[k]! - t);
}

async function unloaded(a: App, b: App, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let k = 0; k < n; k++) {
    await sleep(10);
    const t0 = performance.now();
    a.text.insert(a.text.length, 'x');
    out.push((await b.reach(a.text.length, 30_000)) - t0);
  }
  return out;
}

export async function measureLatency(ctx: BenchContext, kind: SystemKind): Promise<LatencyRun> {
  const { latencyRate: rate, latencySeconds: seconds, unloadedEdits } = ctx.opts;
  const pair = await startPair(ctx, kind, 'latency');
  try {
    const { a, b, destroy } = await appsOn(pair, 'bench/latency');
    try {
      for (let i = 0; i < WARMUP; i++) a.text.insert(a.text.length, 'x');
      await b.reach(WARMUP);
      const lat = await paced(a, b, rate, seconds);
      const idle = await unloaded(a, b, unloadedEdits);
      return {
        edits: lat.length,
        rate,
        p50Ms: sig(median(lat)),
        p99Ms: sig(quantile(lat, 0.99)),
        maxMs: sig(Math.max(...lat)),
        unloadedP50Ms: sig(median(idle)),
        unloadedP99Ms: sig(quantile(idle, 0.99)),
      };
    } finally {
      destroy();
    }
  } finally {
    await pair.stop();
  }
}

/** Row 2: paced single edits, A's app to B's app: p50 and p99 against the baseline; the machine's floor for one edit. */
export async function latencyRow(ctx: BenchContext): Promise<RowResult> {
  const kinds = ['memory', 'leveldb', 'tessera'] as const;
  const all: Record<SystemKind, LatencyRun[]> = { memory: [], leveldb: [], tessera: [] };
  // Several runs per system in a rotating order, each figure the median of its runs: one run of a
  // few milliseconds per edit on a shared 2-core VM swings by a third from one run to the next.
  for (let r = 0; r < ctx.opts.repeat; r++) {
    for (let k = 0; k < kinds.length; k++) {
      const kind = kinds[(k + r) % kinds.length]!;
      ctx.say(`row 2: ${ctx.opts.latencyRate} edits/s for ${ctx.opts.latencySeconds} s through ${SYSTEM_LABEL[kind]} (run ${r + 1} of ${ctx.opts.repeat})`);
      all[kind].push(await measureLatency(ctx, kind));
    }
  }
  const runs = { memory: medianOf(all.memory), leveldb: medianOf(all.leveldb), tessera: medianOf(all.tessera) };
  ctx.say('row 2: the floor (sign + verify + two fsynced writes)');
  const floor: Floor = await measureFloor(ctx.tmp);
  ctx.say('row 2: two loopback hops through a bare relay');
  const hops: RelayHops = await measureRelayHops();
  // What no implementation of Tessera's path can beat here: the floor, and three hops
  // (app → A → B → app) at what one loopback hop costs with nothing done in it.
  const boundMs = sig(floor.p50Ms + 1.5 * hops.twoHopsP50Ms);
  const t = runs.tessera;
  const m = runs.memory;
  const p50 = sig(ratio(t.p50Ms, m.p50Ms));
  const p99 = sig(ratio(t.p99Ms, m.p99Ms));
  const toFloor = sig(ratio(t.unloadedP50Ms, floor.p50Ms));
  return {
    key: 'latency',
    title: '2. Latency',
    data: { runs: ctx.opts.repeat, tessera: t, baselineMemory: m, baselineLeveldb: runs.leveldb, all, floor, relayHops: hops, boundMs, ratios: { p50: p50, p99: p99, unloadedP50ToFloor: toFloor, boundToBaselineP50: sig(ratio(boundMs, m.p50Ms)) }, target: { p50: 3, p99: 5 } },
    lines: [
      line('2 latency', `p50 at ${t.rate}/s, median of ${ctx.opts.repeat} runs (y-leveldb: ${fmt(runs.leveldb.p50Ms, 'ms')})`, fmt(t.p50Ms, 'ms'), fmt(m.p50Ms, 'ms'), `${fmt(p50)}×`, '≤ 3×', p50 <= 3),
      line('', `p99 at ${t.rate}/s (y-leveldb: ${fmt(runs.leveldb.p99Ms, 'ms')})`, fmt(t.p99Ms, 'ms'), fmt(m.p99Ms, 'ms'), `${fmt(p99)}×`, '≤ 5×', p99 <= 5),
      line('', 'unloaded p50, one edit at a time', fmt(t.unloadedP50Ms, 'ms'), fmt(m.unloadedP50Ms, 'ms'), `${fmt(sig(ratio(t.unloadedP50Ms, m.unloadedP50Ms)))}×`),
      line('', 'floor: sign+verify+2 fsynced writes', fmt(floor.p50Ms, 'ms'), '', `unloaded p50 = ${fmt(toFloor)}× floor`),
      line('', `two loopback hops through a bare relay (p50; p99 ${fmt(hops.twoHopsP99Ms, 'ms')})`, '', fmt(hops.twoHopsP50Ms, 'ms'), `baseline p50 = ${fmt(sig(ratio(m.unloadedP50Ms, hops.twoHopsP50Ms)))}× it unloaded`),
      line('', 'bound: floor + 3 such hops (app → A → B → app)', fmt(boundMs, 'ms'), '', `${fmt(sig(ratio(boundMs, m.p50Ms)))}× baseline p50`),
    ],
    notes: [],
  };
}

/** Each figure the median of the runs' figures. */
function medianOf(runs: readonly LatencyRun[]): LatencyRun {
  const mid = (f: (r: LatencyRun) => number) => sig(median(runs.map(f)));
  return {
    edits: runs[0]!.edits,
    rate: runs[0]!.rate,
    p50Ms: mid((r) => r.p50Ms),
    p99Ms: mid((r) => r.p99Ms),
    maxMs: mid((r) => r.maxMs),
    unloadedP50Ms: mid((r) => r.unloadedP50Ms),
    unloadedP99Ms: mid((r) => r.unloadedP99Ms),
  };
}
