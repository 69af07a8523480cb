/**
 * `npm run bench`: Tessera side by side with the y-websocket server
 * (@y/websocket-server 0.1.1, in memory and with y-leveldb), every row
 * measured in this run on this machine. Prints a table and writes
 * bench/results.json. Options: bench/options.ts (`npm run bench -- --help`).
 */
import { mkdir, mkdtemp, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, platform, release, tmpdir, totalmem } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { parseOptions, USAGE, UsageError } from './options.js';
import { readWindows, renderSummary, summarize } from './lib/profile.js';
import { renderTable, type Line, type RowResult } from './lib/report.js';
import { measureCatchUp } from './rows/catchup.js';
import { ceilingRow, measureCeiling, type Ceiling } from './rows/ceiling.js';
import type { BenchContext } from './rows/context.js';
import { hopsRow } from './rows/hops.js';
import { hostileRow } from './rows/hostile.js';
import { latencyRow } from './rows/latency.js';
import { manyDocsRow } from './rows/many-docs.js';
import { startupRow } from './rows/startup.js';
import { throughputRow } from './rows/throughput.js';
import { CLI } from './lib/tessera.js';

const BENCH = import.meta.dirname;

function machine() {
  const list = cpus();
  return {
    cpu: list[0]?.model.trim() ?? 'unknown',
    cores: list.length,
    memoryGiB: Math.round((totalmem() / 1024 ** 3) * 10) / 10,
    node: process.version,
    os: `${platform()} ${release()}`,
  };
}

async function profileReport(dir: string): Promise<string> {
  const out: string[] = [];
  for (const sub of (await readdir(dir, { withFileTypes: true })).filter((d) => d.isDirectory())) {
    const windows = await readWindows(join(dir, sub.name));
    for (const file of (await readdir(join(dir, sub.name))).filter((f) => f.endsWith('.cpuprofile')).sort()) {
      const whole = await summarize(join(dir, sub.name, file), dirname(CLI));
      out.push(`[${sub.name}] ${renderSummary(whole)}`);
      if (windows) out.push(`[${sub.name}, measured part only] ${renderSummary(await summarize(join(dir, sub.name, file), dirname(CLI), 12, windows))}`);
    }
  }
  return out.join('\n\n');
}

async function main(): Promise<number> {
  // Every y-websocket provider adds a process 'exit' listener; row 3 opens thousands.
  process.setMaxListeners(0);
  const { opts, out, help } = parseOptions(process.argv.slice(2), process.env);
  if (help) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  const say = (text: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${text}\n`);
  const m = machine();
  const started = new Date();
  const loadBefore = loadavg()[0]!;
  process.stdout.write(`Tessera benchmark: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, node ${m.node}, ${m.os}\n`);
  if (loadBefore > m.cores / 2) say(`warning: load average ${loadBefore.toFixed(2)} on ${m.cores} cores: something else is running, and the figures will show it`);
  const tmp = await mkdtemp(join(tmpdir(), 'tessera-bench-'));
  const cache = join(BENCH, '.cache');
  const profiles = join(cache, 'profiles', started.toISOString().replace(/[:.]/g, '-'));
  await mkdir(cache, { recursive: true });
  const ctx: BenchContext = { opts, tmp, cache, profiles, say };
  const rows: RowResult[] = [];
  const t0 = performance.now();
  try {
    let ceiling: Ceiling | undefined;
    if (opts.rows.has(6) || opts.rows.has(3)) {
      say(`row 6: raw node:crypto Ed25519 sign+verify for ${opts.ceilingSeconds} s (before any server runs)`);
      ceiling = await measureCeiling(opts.ceilingSeconds);
    }
    if (opts.rows.has(1)) rows.push(await throughputRow(ctx));
    if (opts.rows.has(2)) rows.push(await latencyRow(ctx));
    if (opts.rows.has(3)) rows.push(await manyDocsRow(ctx, ceiling!.pairsPerSecond));
    if (opts.rows.has(4)) rows.push(await hopsRow(ctx));
    if (opts.rows.has(5)) rows.push(await startupRow(ctx));
    if (opts.rows.has(6)) {
      const data = (key: string) => rows.find((r) => r.key === key)?.data as Record<string, never> | undefined;
      say(`row 6: a late joiner catches up ${opts.catchupEnvelopes} envelopes`);
      const catchUp = await measureCatchUp(ctx);
      rows.push(ceilingRow(ctx, ceiling!, { throughput: data('throughput')?.tessera, manyDocs: data('manyDocs')?.tessera, catchUp }));
    }
    if (opts.rows.has(7)) rows.push(await hostileRow(ctx));
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  const seconds = Math.round((performance.now() - t0) / 1000);
  const load = { before: Math.round(loadBefore * 100) / 100, after: Math.round(loadavg()[0]! * 100) / 100 };
  const lines: Line[] = rows.flatMap((r) => r.lines);
  const notes = rows.flatMap((r) => r.notes);
  process.stdout.write(`\n${renderTable(lines)}\n`);
  for (const n of notes) process.stdout.write(`\nnote: ${n}\n`);
  process.stdout.write(`\nbaseline: @y/websocket-server 0.1.1 as its bin runs it (y-leveldb 0.1.2 with YPERSISTENCE: its writes are not fsynced; Tessera's are). Both sides' servers run in child processes; the apps are y-websocket 3 providers in this process. ${seconds} s in all; load average ${load.before} before, ${load.after} after.\n`);
  const results = { date: started.toISOString(), command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`, machine: m, load, cli: relative(process.cwd(), CLI), seconds, options: { ...opts, rows: [...opts.rows] }, rows: Object.fromEntries(rows.map((r) => [r.key, { title: r.title, ...r.data }])), table: lines, notes };
  const file = resolve(out);
  await mkdir(dirname(file), { recursive: true });
  await writeFile(`${file}.tmp`, JSON.stringify(results, null, 2) + '\n');
  await rename(`${file}.tmp`, file);
  process.stdout.write(`wrote ${file}\n`);
  if (opts.profile) {
    const report = await profileReport(profiles);
    await writeFile(join(profiles, 'summary.txt'), report + '\n');
    process.stdout.write(`\nCPU profiles in ${profiles} (summary.txt):\n\n${report}\n`);
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof UsageError) {
      process.stderr.write(`bench: ${err.message}\n\n${USAGE}\n`);
      process.exit(2);
    }
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
