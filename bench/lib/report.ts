/** One line of the printed table. */
export interface Line {
  readonly row: string;
  readonly measure: string;
  readonly tessera: string;
  readonly baseline: string;
  readonly ratio: string;
  readonly target: string;
  /** 'met' / 'missed' against the target, '' where there is none. */
  readonly verdict: '' | 'met' | 'missed';
}

/** What a row hands back: absolute figures and ratios for results.json, lines for the table. */
export interface RowResult {
  readonly key: string;
  readonly title: string;
  readonly data: Record<string, unknown>;
  readonly lines: Line[];
  readonly notes: string[];
}

export function line(row: string, measure: string, tessera: string, baseline = '', ratio = '', target = '', met?: boolean): Line {
  return { row, measure, tessera, baseline, ratio, target, verdict: met === undefined ? '' : met ? 'met' : 'missed' };
}

const HEAD = ['row', 'measure', 'Tessera', 'baseline', 'ratio', 'target', ''] as const;

/** A plain-text table (also valid Markdown). */
export function renderTable(lines: readonly Line[]): string {
  const rows = lines.map((l) => [l.row, l.measure, l.tessera, l.baseline, l.ratio, l.target, l.verdict]);
  const widths = HEAD.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmtRow = (cells: readonly string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [fmtRow(HEAD), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(fmtRow)].join('\n');
}
