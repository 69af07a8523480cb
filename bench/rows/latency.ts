import { type App } from '../lib/clients.js';
import { measureFloor, type Floor } from '../lib/floor.js';
import { measureRelayHops, type RelayHops } from '../lib/relay.js';
import { line, type RowResult } from '../lib/report.js';
import { fmt, median, quantile, ratio, sig } from '../lib/stats.js';
import { appsOn, startPair, SYSTEM_LABEL, type SystemKind } from '../lib/systems.js';
import { nodeTimings, type BenchNode, type Observed } from '../lib/tessera.js';
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
  /** Tessera: medians over the paced edits, from the nodes' /metrics histograms (ms). */
  readonly inside?: Inside;
}

/** Where a paced edit's time goes inside the two nodes, as their /metrics measure it: medians, read off the histograms' buckets. */
export interface Inside {
  /** On A: an app's update from arrival to signed, durable and handed to B. */
  readonly aWriteMs: number;
  /** A's group commits (fsync included). */
  readonly aCommitMs: number;
  /** On B: a message of envelopes from arrival to checked, verified, durable and applied. */
  readonly bReceiveMs: number;
  /** B's group commits. */
  readonly bCommitMs: number;
}

/**
 * The median of what a histogram observed between two readings, in ms:
 * linear within the bucket that holds it (the buckets are a quarter or half
 * millisecond wide below 2 ms).
 */
function medianBetween(x0: Observed, x1: Observed): number {
  const counts = x1.buckets.map(([le, n], i) => [le, n - (x0.buckets[i]?.[1] ?? 0)] as const);
  const total = counts.at(-1)?.[1] ?? 0;
  if (!total) return NaN;
  let below = 0;
  let from = 0;
  for (const [le, n] of counts) {
    if (n >= total / 2) return sig((Number.isFinite(le) ? from + ((total / 2 - below) / Math.max(1, n - below)) * (le - from) : from) * 1000);
    below = n;
    from = le;
  }
  return NaN;
}

/** Medians of the nodes' timing histograms over what `during` does. */
async function insideOf(a: BenchNode, b: BenchNode, during: () => Promise<unknown>): Promise<Inside> {
  const [a0, b0] = [await nodeTimings(a), await nodeTimings(b)];
  await during();
  const [a1, b1] = [await nodeTimings(a), await nodeTimings(b)];
  return { aWriteMs: medianBetween(a0.write, a1.write), aCommitMs: medianBetween(a0.commit, a1.commit), bReceiveMs: medianBetween(b0.receive, b1.receive), bCommitMs: medianBetween(b0.commit, b1.commit) };
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

export async function measureLatency(ctx: BenchContext, kind: SystemKind, config: Record<string, unknown> = {}): Promise<LatencyRun> {
  const { latencyRate: rate, latencySeconds: seconds, unloadedEdits } = ctx.opts;
  const pair = await startPair(ctx, kind, 'latency', 2, config);
  try {
    const { a, b, destroy } = await appsOn(pair, 'bench/latency');
    try {
      for (let i = 0; i < WARMUP; i++) a.text.insert(a.text.length, 'x');
      await b.reach(WARMUP);
      let lat: number[] = [];
      const nodes = pair.nodes;
      const inside = nodes ? await insideOf(nodes[0]!, nodes[nodes.length - 1]!, async () => (lat = await paced(a, b, rate, seconds))) : ((lat = await paced(a, b, rate, seconds)), undefined);
      const idle = await unloaded(a, b, unloadedEdits);
      return {
        edits: lat.length,
        rate,
        p50Ms: sig(median(lat)),
        p99Ms: sig(quantile(lat, 0.99)),
        maxMs: sig(Math.max(...lat)),
        unloadedP50Ms: sig(median(idle)),
        unloadedP99Ms: sig(quantile(idle, 0.99)),
        ...(inside ? { inside } : {}),
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
  // What the fsyncs cost end to end: the same two nodes with durability "relaxed" (no fsync;
  // after an unclean stop a node starts a new feed). Not what the target is about.
  const relaxedRuns: LatencyRun[] = [];
  for (let r = 0; r < ctx.opts.repeat; r++) {
    ctx.say(`row 2: ${ctx.opts.latencyRate} edits/s for ${ctx.opts.latencySeconds} s through Tessera with durability relaxed (run ${r + 1} of ${ctx.opts.repeat})`);
    relaxedRuns.push(await measureLatency(ctx, 'tessera', { durability: 'relaxed' }));
  }
  const relaxed = medianOf(relaxedRuns);
  ctx.say('row 2: the floor (sign + verify + two fsynced writes)');
  const floor: Floor = await measureFloor(ctx.tmp);
  // The same work, each time after the idle gap between two paced edits.
  const gapMs = 1000 / ctx.opts.latencyRate;
  const idleFloor: Floor = await measureFloor(ctx.tmp, 300, gapMs);
  ctx.say('row 2: two loopback hops through a bare relay');
  const hops: RelayHops = await measureRelayHops();
  // What no implementation of Tessera's path can beat here, for edits that find the
  // nodes idle: the floor after that gap, and three hops (app → A → B → app) at what one
  // loopback hop costs with nothing done in it (measured between idle gaps as well).
  const boundMs = sig(idleFloor.p50Ms + 1.5 * hops.twoHopsP50Ms);
  const t = runs.tessera;
  const m = runs.memory;
  const p50 = sig(ratio(t.p50Ms, m.p50Ms));
  const p99 = sig(ratio(t.p99Ms, m.p99Ms));
  const toFloor = sig(ratio(t.unloadedP50Ms, floor.p50Ms));
  return {
    key: 'latency',
    title: '2. Latency',
    data: { runs: ctx.opts.repeat, tessera: t, baselineMemory: m, baselineLeveldb: runs.leveldb, all, floor, idleFloor: { ...idleFloor, gapMs }, relayHops: hops, boundMs, relaxed, ratios: { p50: p50, p99: p99, unloadedP50ToFloor: toFloor, boundToBaselineP50: sig(ratio(boundMs, m.p50Ms)) }, target: { p50: 3, p99: 5 } },
    lines: [
      line('2 latency', `p50 at ${t.rate}/s, median of ${ctx.opts.repeat} runs (y-leveldb: ${fmt(runs.leveldb.p50Ms, 'ms')})`, fmt(t.p50Ms, 'ms'), fmt(m.p50Ms, 'ms'), `${fmt(p50)}×`, '≤ 3×', p50 <= 3),
      line('', `p99 at ${t.rate}/s (y-leveldb: ${fmt(runs.leveldb.p99Ms, 'ms')})`, fmt(t.p99Ms, 'ms'), fmt(m.p99Ms, 'ms'), `${fmt(p99)}×`, '≤ 5×', p99 <= 5),
      line('', 'unloaded p50, one edit at a time', fmt(t.unloadedP50Ms, 'ms'), fmt(m.unloadedP50Ms, 'ms'), `${fmt(sig(ratio(t.unloadedP50Ms, m.unloadedP50Ms)))}×`),
      line('', 'Tessera with durability "relaxed" (no fsync): p50, p99', `${fmt(relaxed.p50Ms, 'ms')}, ${fmt(relaxed.p99Ms, 'ms')}`, '', `${fmt(sig(ratio(relaxed.p50Ms, m.p50Ms)))}×, ${fmt(sig(ratio(relaxed.p99Ms, m.p99Ms)))}×`),
      line('', 'floor: sign+verify+2 fsynced writes', fmt(floor.p50Ms, 'ms'), '', `unloaded p50 = ${fmt(toFloor)}× floor`),
      line('', `the same floor, each after ${fmt(gapMs, 'ms')} idle (as paced edits come)`, fmt(idleFloor.p50Ms, 'ms'), '', `${fmt(sig(ratio(idleFloor.p50Ms, floor.p50Ms)))}× the floor`),
      line('', `two loopback hops through a bare relay (p50; p99 ${fmt(hops.twoHopsP99Ms, 'ms')})`, '', fmt(hops.twoHopsP50Ms, 'ms'), `baseline p50 = ${fmt(sig(ratio(m.unloadedP50Ms, hops.twoHopsP50Ms)))}× it unloaded`),
      line('', 'bound: idle floor + 3 such hops (app → A → B → app)', fmt(boundMs, 'ms'), '', `${fmt(sig(ratio(boundMs, m.p50Ms)))}× baseline p50`),
      ...(t.inside
        ? [
            line('', 'inside A, paced (p50 from /metrics): app update → durable, sent', `${fmt(t.inside.aWriteMs, 'ms')} (commit ${fmt(t.inside.aCommitMs, 'ms')})`, ''),
            line('', 'inside B, paced (p50 from /metrics): envelopes → durable, applied', `${fmt(t.inside.bReceiveMs, 'ms')} (commit ${fmt(t.inside.bCommitMs, 'ms')})`, ''),
          ]
        : []),
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
    ...(runs.every((r) => r.inside)
      ? {
          inside: {
            aWriteMs: mid((r) => r.inside!.aWriteMs),
            aCommitMs: mid((r) => r.inside!.aCommitMs),
            bReceiveMs: mid((r) => r.inside!.bReceiveMs),
            bCommitMs: mid((r) => r.inside!.bCommitMs),
          },
        }
      : {}),
  };
}
