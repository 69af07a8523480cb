import type { StatusBody } from '../api/routes/status.js';
import { clientFor } from './running.js';

export async function statusCommand(dataDir: string, asJson: boolean): Promise<string> {
  const status = await (await clientFor(dataDir)).status();
  return asJson ? JSON.stringify(status, null, 2) : formatStatus(status);
}

/**
 * Control characters (terminal escapes, line breaks, bidi overrides) shown
 * escaped: a peer's name comes from another admin's `tessera id --json`,
 * and must not rewrite the terminal or forge lines of this table.
 */
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const shown = (text: string) => text.replace(CONTROL, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

/** A readable table of a node's status. */
export function formatStatus(s: StatusBody): string {
  const lines = [`node   ${shown(s.name)} (${s.id})`, `docs   ${s.docs}`];
  if (s.grant) lines.push(`grant  expires ${s.grant.expiresAt}`);
  if (s.pending) lines.push(`pending ${s.pending}`);
  lines.push('', 'peers');
  if (s.peers.length === 0) lines.push('  (none)');
  const rows = s.peers.map((p) => [p.name ?? '-', p.state, p.since ?? '-', p.url ?? '-', p.id].map(shown));
  const widths = [0, 1, 2, 3].map((i) => Math.max(...rows.map((r) => r[i]!.length), 4));
  for (const r of rows) lines.push('  ' + r.map((c, i) => (i < 4 ? c.padEnd(widths[i]!) : c)).join('  '));
  if (s.alarms.length) {
    lines.push('', 'alarms');
    for (const a of s.alarms) lines.push(shown(`  ${a.kind}  ${a.doc}  origins ${a.origins.join(', ')}${a.peer ? `  via ${a.peer}` : ''}`));
  }
  return lines.join('\n');
}
