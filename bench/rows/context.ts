import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';

/** Sizes and switches of one run (flags and BENCH_* variables, see bench/options.ts). */
export interface BenchOptions {
  /** Row 1: edits typed on A; rows 1 and 2: how many times each system runs (the median counts). */
  readonly throughputEdits: number;
  readonly repeat: number;
  /** Row 2: paced edits per second, and for how many seconds. */
  readonly latencyRate: number;
  readonly latencySeconds: number;
  /** Row 2: unloaded edits (each waits for the previous to arrive). */
  readonly unloadedEdits: number;
  /** Row 3: documents, and edits per document. */
  readonly manyDocs: number;
  readonly editsPerDoc: number;
  /** Row 4: nodes in the chain, and edits typed at one end. */
  readonly chain: number;
  readonly hopEdits: number;
  /** Row 5: envelopes in the start-up fixture (across `fixtureDocs` documents). */
  readonly fixtureEnvelopes: number;
  readonly fixtureDocs: number;
  /** Row 5: documents stored and in use for the memory measure. */
  readonly memoryDocs: number;
  readonly memoryInUse: number;
  /** Row 6: seconds for each crypto loop. */
  readonly ceilingSeconds: number;
  /** Row 6: envelopes (over 100 documents) that a node joining late pulls from its peer. */
  readonly catchupEnvelopes: number;
  /** Which rows to run (1–6). */
  readonly rows: ReadonlySet<number>;
  /** Write V8 CPU profiles of the Tessera children (and baselines) into the profile folder. */
  readonly profile: boolean;
}

/** What every row gets: options, a temp root, the cache and profile folders. */
export interface BenchContext {
  readonly opts: BenchOptions;
  /** A temp folder for this run, removed at the end. */
  readonly tmp: string;
  /** bench/.cache: fixtures that outlive a run (gitignored). */
  readonly cache: string;
  /** Where CPU profiles go when profiling. */
  readonly profiles: string;
  /** Prints a progress line on stderr. */
  readonly say: (text: string) => void;
}

/** The CPU profile folder for one measured system, or undefined when not profiling. */
export async function profileDir(ctx: BenchContext, name: string): Promise<string | undefined> {
  if (!ctx.opts.profile) return undefined;
  const dir = join(ctx.profiles, name);
  await mkdir(dir, { recursive: true });
  return dir;
}
