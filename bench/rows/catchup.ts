import { mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import { ensureFixture } from '../fixture/build.js';
import { markWindow, monotonicUs } from '../lib/profile.js';
import { sig } from '../lib/stats.js';
import { createNodeDir, heldEnvelopes, linkChain, startNode, stopAll, type BenchNode } from '../lib/tessera.js';
import { until } from '../lib/wait.js';
import { profileDir, type BenchContext } from './context.js';
import { copyOf } from './startup.js';

export interface CatchUpRun {
  /** Envelopes pulled after the clock started (those that came while linking are not counted). */
  readonly envelopes: number;
  readonly docs: number;
  /** From the session being up until the joiner holds every envelope. */
  readonly ms: number;
  readonly envelopesPerSecond: number;
}

const DOCS = 100;

/**
 * Envelopes per second at saturation with no app in the way: a node whose
 * store holds `catchupEnvelopes` one-edit envelopes over 100 documents (a
 * cached fixture, see bench/fixture) is linked to an empty node, which pulls
 * them all: every one sent, verified, stored durably and applied on the
 * joiner. Timed from the session being up until the joiner's vectors count
 * them all.
 */
export async function measureCatchUp(ctx: BenchContext): Promise<CatchUpRun> {
  const perDoc = Math.ceil(ctx.opts.catchupEnvelopes / DOCS);
  const f = await ensureFixture(ctx.cache, DOCS, perDoc, ctx.say);
  const prof = await profileDir(ctx, 'catchup-tessera');
  const nodes: BenchNode[] = [];
  try {
    nodes.push(await startNode(await copyOf(ctx, f.nodeDir, 'catchup'), 'source', { cpuProfDir: prof }));
    const { dir } = await createNodeDir(await mkdtemp(join(ctx.tmp, 'catchup-')), 'joiner');
    nodes.push(await startNode(dir, 'joiner', { cpuProfDir: prof }));
    await linkChain(nodes);
    // The session is up and the sync under way: count from what the joiner holds now.
    const from = monotonicUs();
    const t0 = performance.now();
    const before = await heldEnvelopes(nodes[1]!);
    await until('the joiner holds every envelope', async () => ((await heldEnvelopes(nodes[1]!)) >= f.envelopes ? true : undefined), { timeoutMs: 600_000, intervalMs: 25 });
    const ms = performance.now() - t0;
    await markWindow(prof, [from, monotonicUs()]);
    const envelopes = f.envelopes - before;
    return { envelopes, docs: DOCS, ms: sig(ms, 4), envelopesPerSecond: sig((envelopes / ms) * 1000, 4) };
  } finally {
    await stopAll(nodes);
  }
}
