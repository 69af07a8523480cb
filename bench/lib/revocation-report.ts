import { closeKind } from '../../src/protocol/close-codes.js';
import type { Comeback } from './offline-app.js';

/** What happened to one revoked node. */
export interface RevokedNode {
  readonly name: string;
  /** How it was revoked. */
  readonly how: string;
  /** Its own feed's seq that the cutoff keeps (0 before the cutoff is known). */
  cutoff: number;
  /** Keys its API acknowledged in all, during the partition, and beyond the cutoff. */
  written: number;
  duringPartition: number;
  beyondCutoff: number;
  /** Honest nodes that refused its dial with the revoked code (4011), as its own log says. */
  refusedBy: string[];
  /** Honest nodes it still had a session with at the end (expected: none). */
  connectedTo: string[];
}

/** Everything the soak says about the revocation-during-a-partition and laundering scenarios. */
export interface RevocationReport {
  /** Why the scenario stopped early, if it did. */
  error?: string;
  partitionS: number;
  readonly revoked: RevokedNode[];
  /** The honest nodes that every check covers. */
  honest: string[];
  /** Beyond any cutoff, on the honest nodes: envelopes (vectors and /authors), keys in the JSON, Yjs clocks in the state. */
  readonly beyond: { envelopes: number; keys: number; clocks: number };
  converged: boolean;
  /** Same JSON and digest everywhere, or what differs. */
  convergence: string;
  /** Honest nodes whose /v1/status shows D `revoked`. */
  showRevoked: string[];
  /** `tessera verify` through each honest node's API, of its whole store (`<node> ok`, or what failed). */
  verify: string[];
  readonly laundering: Comeback[];
  /** Honest edits of the laundering app, and how many of them reached every honest node. */
  honestEdits: number;
  honestPassed: number;
  /** The data dirs of the nodes the scenario started (verified offline by the soak). */
  readonly dirs: { name: string; dir: string }[];
}

export function emptyReport(): RevocationReport {
  const node = (name: string, how: string): RevokedNode => ({ name, how, cutoff: 0, written: 0, duringPartition: 0, beyondCutoff: 0, refusedBy: [], connectedTo: [] });
  return {
    partitionS: 0,
    revoked: [node('D', 'peers file: `tessera peers revoke` on A, copied to B, C, E'), node('G', 'authority: `tessera revoke` loaded on A alone, spread by sessions')],
    honest: [],
    beyond: { envelopes: 0, keys: 0, clocks: 0 },
    converged: false,
    convergence: 'not checked',
    showRevoked: [],
    verify: [],
    laundering: [],
    honestEdits: 0,
    honestPassed: 0,
    dirs: [],
  };
}

const REVOKED = 4011;
const codeName = (code: number | null) => (code === null ? 'kept open' : `${code} ${closeKind(code)?.name ?? (code === 4409 ? 'refused content' : '')}`.trim());
const refusalOk = (r: RevocationReport, n: RevokedNode) => r.honest.length > 0 && r.honest.every((h) => n.refusedBy.includes(h)) && n.connectedTo.length === 0;

/** Whether every check of the scenario held. */
export function revocationPassed(r: RevocationReport): boolean {
  const stripped = r.laundering.length > 0 && r.laundering.every((l) => l.code === 4409);
  return (
    r.error === undefined &&
    r.revoked.every((n) => n.beyondCutoff > 0 && refusalOk(r, n)) &&
    r.beyond.envelopes + r.beyond.keys + r.beyond.clocks === 0 &&
    r.converged &&
    r.verify.length === r.honest.length &&
    r.verify.every((v) => /^\S+ ok\b/.test(v)) &&
    stripped &&
    r.honestPassed === r.honestEdits
  );
}

/** The summary lines. */
export function revocationSummary(r: RevocationReport): string[] {
  const honest = r.honest.join(', ') || 'the honest nodes';
  return [
    `revocation during a partition (D, E, G cut off from A, B, C for ${r.partitionS.toFixed(1)} s; D and G revoked meanwhile):`,
    ...(r.error ? [`  SCENARIO FAILED: ${r.error}`] : []),
    ...r.revoked.map((n) => `  ${n.name} (${n.how}): ${n.written} writes acknowledged by its API, ${n.duringPartition} during the partition, cutoff at seq ${n.cutoff}, ${n.beyondCutoff} writes beyond it`),
    `  beyond-cutoff envelopes found on ${honest}: ${r.beyond.envelopes} (vectors and /authors); beyond-cutoff keys in their JSON ${r.beyond.keys}, clocks in their state ${r.beyond.clocks}`,
    `  converged: ${r.converged ? 'yes' : 'NO'} (${r.convergence}); tessera verify through the API: ${r.verify.join(', ') || 'not run'}`,
    ...r.revoked.map((n) => `  ${n.name} reconnect: ${refusalOk(r, n) ? 'refused' : 'NOT REFUSED everywhere'} with ${REVOKED} ${closeKind(REVOKED)!.name} by ${n.refusedBy.join(', ') || 'nobody'}${n.connectedTo.length ? `; still connected to ${n.connectedTo.join(', ')}` : ''}`),
    `  /v1/status shows D revoked on: ${r.showRevoked.join(', ') || 'none'}`,
    `laundering (a y-websocket app holding D's and G's dropped content comes back): ${r.laundering.filter((l) => l.code === 4409).length}/${r.laundering.length} attempts stripped (${r.laundering.map((l) => `${l.node}: ${codeName(l.code)}`).join('; ') || 'none made'}), honest edits passed ${r.honestPassed}/${r.honestEdits}`,
  ];
}
