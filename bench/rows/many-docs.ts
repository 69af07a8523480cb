import type { App } from '../lib/clients.js';
import { markWindow, monotonicUs } from '../lib/profile.js';
import { line, type RowResult } from '../lib/report.js';
import { fmt, ratio, sig } from '../lib/stats.js';
import { cpuMsOf } from '../lib/proc.js';
import { app, startPair, SYSTEM_LABEL, type Pair, type SystemKind } from '../lib/systems.js';
import { yieldIo } from '../lib/wait.js';
import { medianRun } from './throughput.js';
import type { BenchContext } from './context.js';

export interface ManyDocsRun {
  readonly docs: number;
  readonly editsPerDoc: number;
  readonly ms: number;
  readonly editsPerSecond: number;
  /** Tessera: envelopes A signed for these edits, and their rate. */
  readonly envelopes?: number;
  readonly envelopesPerSecond?: number;
  /** CPU ms used in the timed part: each server process (A then B for Tessera), and this process (the apps). */
  readonly cpu?: { readonly servers: readonly number[]; readonly apps: number };
}

const CONNECT_GROUP = 50;

/** Opens one app per document on one side, `CONNECT_GROUP` at a time, each synced. */
async function openApps(pair: Pair, side: 'a' | 'b', names: readonly string[]): Promise<App[]> {
  const apps: App[] = [];
  for (let i = 0; i < names.length; i += CONNECT_GROUP) {
    const group = names.slice(i, i + CONNECT_GROUP).map((name) => app(pair[side], name));
    apps.push(...group);
    await Promise.all(group.map((a) => a.synced(60_000)));
  }
  return apps;
}

/** CPU used since `at` by the pair's servers and by this process; undefined where /proc is not there. */
async function cpuSince(pair: Pair, at: { servers: (number | undefined)[]; apps: NodeJS.CpuUsage }): Promise<ManyDocsRun['cpu']> {
  const now = await Promise.all(pair.pids.map(cpuMsOf));
  const apps = process.cpuUsage(at.apps);
  if (now.some((n, i) => n === undefined || at.servers[i] === undefined)) return undefined;
  return { servers: now.map((n, i) => n! - at.servers[i]!), apps: Math.round((apps.user + apps.system) / 1000) };
}

/** CPU of a run as a table cell: the total of what 2 cores give in its time, then each process. */
function cpuCell(run: ManyDocsRun, names: readonly string[]): string {
  if (!run.cpu) return '–';
  const parts = [...run.cpu.servers.map((ms, i) => `${names[i]} ${fmt(ms)}`), `apps ${fmt(run.cpu.apps)}`];
  return `${fmt(cpuTotal(run))} of ${fmt(2 * run.ms, 'ms')} (${parts.join(', ')})`;
}

const cpuTotal = (run: ManyDocsRun) => (run.cpu ? run.cpu.servers.reduce((a, b) => a + b, 0) + run.cpu.apps : NaN);

/**
 * An app per document on each side (2 × docs connections, all open and
 * synced before the clock starts); then every A-side app types its edits,
 * timed until every B-side app has them all.
 */
export async function measureManyDocs(ctx: BenchContext, kind: SystemKind): Promise<ManyDocsRun> {
  const { manyDocs: docs, editsPerDoc } = ctx.opts;
  const names = Array.from({ length: docs }, (_, i) => `many/${String(i).padStart(5, '0')}`);
  const pair = await startPair(ctx, kind, 'many-docs');
  const apps: App[] = [];
  try {
    const as = await openApps(pair, 'a', names);
    apps.push(...as);
    const bs = await openApps(pair, 'b', names);
    apps.push(...bs);
    const cpu0 = { servers: await Promise.all(pair.pids.map(cpuMsOf)), apps: process.cpuUsage() };
    const from = monotonicUs();
    const t0 = performance.now();
    const arrived = Promise.all(bs.map((b) => b.reach(editsPerDoc, 300_000)));
    for (const [i, a] of as.entries()) {
      for (let e = 0; e < editsPerDoc; e++) a.text.insert(a.text.length, 'x');
      if (i % 20 === 19) await yieldIo();
    }
    const ms = Math.max(...(await arrived)) - t0;
    const cpu = await cpuSince(pair, cpu0);
    await markWindow(pair.profileDir, [from, monotonicUs()]);
    const edits = docs * editsPerDoc;
    const run: ManyDocsRun = { docs, editsPerDoc, ms: sig(ms, 4), editsPerSecond: sig((edits / ms) * 1000, 4), ...(cpu && { cpu }) };
    if (!pair.envelopes) return run;
    const envelopes = await pair.envelopes(new Set(names));
    return { ...run, envelopes, envelopesPerSecond: sig((envelopes / ms) * 1000, 4) };
  } finally {
    for (const a of apps) a.destroy();
    await pair.stop();
  }
}

/**
 * Row 3: many documents at once; Tessera's envelopes per second against the
 * crypto ceiling of row 6. Each system runs `repeat` times, in a rotating
 * order, and the median run counts (as in row 1).
 */
export async function manyDocsRow(ctx: BenchContext, ceilingPairsPerSecond: number): Promise<RowResult> {
  const kinds = ['memory', 'leveldb', 'tessera'] as const;
  const all: Record<SystemKind, ManyDocsRun[]> = { memory: [], leveldb: [], tessera: [] };
  for (let r = 0; r < ctx.opts.repeat; r++) {
    for (let k = 0; k < kinds.length; k++) {
      const kind = kinds[(k + r) % kinds.length]!;
      ctx.say(`row 3: ${ctx.opts.manyDocs} documents × ${ctx.opts.editsPerDoc} edits through ${SYSTEM_LABEL[kind]} (run ${r + 1} of ${ctx.opts.repeat})`);
      all[kind].push(await measureManyDocs(ctx, kind));
    }
  }
  const runs = { memory: medianRun(all.memory), leveldb: medianRun(all.leveldb), tessera: medianRun(all.tessera) };
  const t = runs.tessera;
  const m = runs.memory;
  const toCeiling = sig(ratio(t.envelopesPerSecond ?? NaN, ceilingPairsPerSecond));
  // What the row allows at all: the in-memory baseline signs and stores nothing, yet its documents per second are the bound its apps and sockets set.
  const baselineDocsPerSecond = sig((m.docs / m.ms) * 1000, 4);
  const baselineToCeiling = sig(ratio(baselineDocsPerSecond, ceilingPairsPerSecond));
  const vsMemory = sig(ratio(m.ms, t.ms));
  const label = `${t.docs} docs × ${t.editsPerDoc} edits, all on B (median of ${ctx.opts.repeat})`;
  return {
    key: 'manyDocs',
    title: '3. Many documents',
    data: { tessera: t, baselineMemory: m, baselineLeveldb: runs.leveldb, all, ceilingPairsPerSecond, ratios: { speedVsMemory: vsMemory, speedVsLeveldb: sig(ratio(runs.leveldb.ms, t.ms)), envelopesToCeiling: toCeiling, baselineDocsToCeiling: baselineToCeiling } },
    lines: [
      line('3 many docs', `${label} (y-leveldb: ${fmt(runs.leveldb.ms, 'ms')})`, fmt(t.ms, 'ms'), fmt(m.ms, 'ms'), `${fmt(vsMemory)}× its speed`),
      line('', 'CPU used in that run, of what 2 cores give (all threads)', cpuCell(t, ['A', 'B']), cpuCell(m, ['server']), `${fmt(sig(ratio(cpuTotal(t), cpuTotal(m))))}× the CPU`),
      line('', 'envelopes/s vs sign+verify ceiling (the target is at saturation: row 6)', fmt(t.envelopesPerSecond, 'env/s'), fmt(ceilingPairsPerSecond, 'pairs/s'), `${fmt(toCeiling * 100)}%`),
      line('', 'the in-memory baseline (nothing signed or stored): its docs/s vs the same ceiling', '', fmt(baselineDocsPerSecond, 'docs/s'), `${fmt(baselineToCeiling * 100)}%`),
    ],
    notes: [],
  };
}
