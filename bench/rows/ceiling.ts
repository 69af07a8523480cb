import { sign, verify } from 'node:crypto';
import { generateKeyPair } from '../../src/identity/keys.js';
import { signEnvelope } from '../../src/sync/envelope.js';
import type { DocName, FeedId } from '../../src/types.js';
import { line, type RowResult } from '../lib/report.js';
import { fmt, ratio, sig } from '../lib/stats.js';
import type { BenchContext } from './context.js';
import type { CatchUpRun } from './catchup.js';

export interface Ceiling {
  /** Raw node:crypto Ed25519 sign + verify of one envelope's signing input, per second, one thread. */
  readonly pairsPerSecond: number;
  readonly signsPerSecond: number;
  readonly verifiesPerSecond: number;
  /** Bytes signed: the JWS signing input of a typical one-edit envelope. */
  readonly inputBytes: number;
}

function rate(seconds: number, op: () => void): number {
  for (let i = 0; i < 200; i++) op();
  let n = 0;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  let now = t0;
  while (now < end) {
    for (let i = 0; i < 50; i++) op();
    n += 50;
    now = performance.now();
  }
  return (n / (now - t0)) * 1000;
}

/** The machine's limit of one signature per envelope: raw node:crypto, no jose, on one core. */
export async function measureCeiling(seconds: number): Promise<Ceiling> {
  const pair = await generateKeyPair();
  const token = signEnvelope(
    { iss: pair.id, doc: 'bench/ceiling' as DocName, feed: 'AAAAAAAAAAAAAAAAAAAAAA' as FeedId, seq: 1, h: 'A'.repeat(43), clients: [[1234567890, 0, 1]], iat: Math.floor(Date.now() / 1000) },
    pair.privateKey,
  );
  const input = Buffer.from(token.slice(0, token.lastIndexOf('.')));
  const sig0 = sign(null, input, pair.privateKey);
  return {
    pairsPerSecond: sig(rate(seconds, () => verify(null, input, pair.publicKey, sign(null, input, pair.privateKey))), 4),
    signsPerSecond: sig(rate(seconds / 2, () => sign(null, input, pair.privateKey)), 4),
    verifiesPerSecond: sig(rate(seconds / 2, () => verify(null, input, pair.publicKey, sig0)), 4),
    inputBytes: input.length,
  };
}

/** What rows 1 and 3 measured of Tessera's envelopes, and the catch-up run of this row. */
export interface Saturation {
  readonly throughput?: { envelopes?: number; ms: number; editsPerEnvelope?: number } | undefined;
  readonly manyDocs?: { envelopes?: number; envelopesPerSecond?: number } | undefined;
  readonly catchUp?: CatchUpRun | undefined;
}

/** Row 6: the ceiling, next to Tessera's envelopes per second at saturation and edits per envelope. */
export function ceilingRow(ctx: BenchContext, c: Ceiling, s: Saturation): RowResult {
  const tpRate = s.throughput?.envelopes ? sig((s.throughput.envelopes / s.throughput.ms) * 1000, 4) : undefined;
  const rates = [tpRate, s.manyDocs?.envelopesPerSecond, s.catchUp?.envelopesPerSecond].filter((r): r is number => r !== undefined);
  const best = rates.length ? Math.max(...rates) : undefined;
  const share = best === undefined ? undefined : sig(ratio(best, c.pairsPerSecond));
  return {
    key: 'ceiling',
    title: '6. Ceiling',
    data: { ...c, seconds: ctx.opts.ceilingSeconds, tessera: { envelopesPerSecondThroughput: tpRate ?? null, envelopesPerSecondManyDocs: s.manyDocs?.envelopesPerSecond ?? null, catchUp: s.catchUp ?? null, saturation: best ?? null, editsPerEnvelope: s.throughput?.editsPerEnvelope ?? null, shareOfCeiling: share ?? null }, target: { shareOfCeiling: 0.7 } },
    lines: [
      line('6 ceiling', `Ed25519 sign+verify, node:crypto, 1 core (${c.inputBytes} B)`, '', fmt(c.pairsPerSecond, 'pairs/s'), `sign ${fmt(c.signsPerSecond)}/s, verify ${fmt(c.verifiesPerSecond)}/s`),
      ...(s.catchUp ? [line('', `a late joiner catches up ${fmt(s.catchUp.envelopes)} envelopes (${s.catchUp.docs} docs)`, `${fmt(s.catchUp.ms, 'ms')} (${fmt(s.catchUp.envelopesPerSecond, 'env/s')})`, '', `${fmt(sig(ratio(s.catchUp.envelopesPerSecond, c.pairsPerSecond)) * 100)}% (${fmt(sig(ratio(s.catchUp.envelopesPerSecond, c.verifiesPerSecond)) * 100)}% of verify alone)`)] : []),
      line('', 'Tessera envelopes/s at saturation (best of rows 1, 3 and catch-up)', fmt(best, 'env/s'), fmt(c.pairsPerSecond, 'pairs/s'), share === undefined ? '' : `${fmt(share * 100)}%`, '≥ 70%', share === undefined ? undefined : share >= 0.7),
      line('', 'edits carried per envelope (row 1)', fmt(s.throughput?.editsPerEnvelope), ''),
    ],
    notes: [],
  };
}
