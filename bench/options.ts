import { parseArgs } from 'node:util';
import type { BenchOptions } from './rows/context.js';

export const USAGE = `npm run bench -- [options]   (each also as an environment variable)

  --rows 1,2,3,4,5,6,7      rows to run                                BENCH_ROWS        (all)
  --edits N                 row 1: edits typed on A                     BENCH_EDITS       (3000)
  --repeat N                rows 1–3: runs per system (median reported) BENCH_REPEAT    (3)
  --latency-rate N          row 2: paced edits per second               BENCH_LATENCY_RATE (200)
  --latency-seconds N       row 2: seconds of paced edits               BENCH_LATENCY_SECONDS (5)
  --unloaded-edits N        row 2: edits sent one at a time             BENCH_UNLOADED_EDITS (100)
  --docs N                  row 3: documents                            BENCH_DOCS        (1000)
  --edits-per-doc N         row 3: edits per document                   BENCH_EDITS_PER_DOC (3)
  --chain N                 row 4: nodes in the chain                   BENCH_CHAIN       (5)
  --hop-edits N             row 4: edits typed at one end               BENCH_HOP_EDITS   (10000)
  --fixture-envelopes N     row 5: envelopes in the start-up fixture    BENCH_FIXTURE_ENVELOPES (1000000)
  --fixture-docs N          row 5: documents in the start-up fixture    BENCH_FIXTURE_DOCS (1000)
  --memory-docs N           row 5: documents stored for memory          BENCH_MEMORY_DOCS (10000)
  --memory-in-use N         row 5: documents in use for memory          BENCH_MEMORY_IN_USE (100)
  --ceiling-seconds N       row 6: seconds of the sign+verify loop      BENCH_CEILING_SECONDS (2)
  --catchup-envelopes N     row 6: envelopes a late joiner catches up    BENCH_CATCHUP_ENVELOPES (20000)
  --quick                   small sizes everywhere (a smoke test)       BENCH_QUICK=1
  --profile                 CPU profiles of every server (bench/.cache/profiles) BENCH_PROFILE=1
  --out FILE                results file                                BENCH_OUT         (bench/results.json)`;

const FLAGS = {
  rows: { type: 'string' },
  edits: { type: 'string' },
  repeat: { type: 'string' },
  'latency-rate': { type: 'string' },
  'latency-seconds': { type: 'string' },
  'unloaded-edits': { type: 'string' },
  docs: { type: 'string' },
  'edits-per-doc': { type: 'string' },
  chain: { type: 'string' },
  'hop-edits': { type: 'string' },
  'fixture-envelopes': { type: 'string' },
  'fixture-docs': { type: 'string' },
  'memory-docs': { type: 'string' },
  'memory-in-use': { type: 'string' },
  'ceiling-seconds': { type: 'string' },
  'catchup-envelopes': { type: 'string' },
  quick: { type: 'boolean' },
  profile: { type: 'boolean' },
  out: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

type Flag = keyof typeof FLAGS;

export class UsageError extends Error {}

/** Options from flags, else BENCH_* environment variables, else defaults sized for a few minutes on 2 cores. */
export function parseOptions(argv: string[], env: NodeJS.ProcessEnv): { opts: BenchOptions; out: string; help: boolean } {
  let values: Partial<Record<Flag, string | boolean>>;
  try {
    values = parseArgs({ args: argv, options: FLAGS, strict: true }).values;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const raw = (flag: Flag): string | undefined => {
    const v = values[flag];
    if (typeof v === 'string') return v;
    if (v === true) return '1';
    return env[`BENCH_${flag.toUpperCase().replaceAll('-', '_')}`];
  };
  const yes = (flag: Flag) => ['1', 'true', 'yes'].includes(raw(flag) ?? '');
  const quick = yes('quick');
  const int = (flag: Flag, normal: number, small: number, min = 1): number => {
    const text = raw(flag);
    if (text === undefined) return quick ? small : normal;
    const n = Number(text);
    if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`--${flag} must be an integer ≥ ${min}, not ${JSON.stringify(text)}`);
    return n;
  };
  const list = (flag: Flag, normal: number[], min: number, max: number): number[] => {
    const text = raw(flag);
    if (text === undefined) return normal;
    const out = text.split(',').map((s) => Number(s.trim()));
    if (!out.length || out.some((n) => !Number.isSafeInteger(n) || n < min || n > max)) throw new UsageError(`--${flag} must be a comma-separated list of integers from ${min} to ${max}`);
    return out;
  };
  const fixtureDocs = int('fixture-docs', 1000, 100);
  const opts: BenchOptions = {
    throughputEdits: int('edits', 3000, 1000),
    repeat: int('repeat', 3, 1),
    latencyRate: int('latency-rate', 200, 200),
    latencySeconds: int('latency-seconds', 5, 2),
    unloadedEdits: int('unloaded-edits', 100, 30),
    manyDocs: int('docs', 1000, 100),
    editsPerDoc: int('edits-per-doc', 3, 3),
    chain: int('chain', 5, 3, 2),
    hopEdits: int('hop-edits', 10_000, 1000),
    fixtureEnvelopes: int('fixture-envelopes', 1_000_000, 10_000, fixtureDocs),
    fixtureDocs,
    memoryDocs: int('memory-docs', 10_000, 1000, 10),
    memoryInUse: int('memory-in-use', 100, 50),
    ceilingSeconds: int('ceiling-seconds', 2, 1),
    catchupEnvelopes: int('catchup-envelopes', 20_000, 5000, 100),
    rows: new Set(list('rows', [1, 2, 3, 4, 5, 6, 7], 1, 7)),
    profile: yes('profile'),
  };
  if (opts.memoryInUse > opts.memoryDocs / 10) throw new UsageError('--memory-in-use must be at most a tenth of --memory-docs (the smaller store has a tenth of the documents)');
  return { opts, out: raw('out') ?? 'bench/results.json', help: values.help === true };
}
