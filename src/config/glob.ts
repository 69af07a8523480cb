import type { DocName } from '../types.js';

/**
 * Document globs (DESIGN.md §2, a contract): segments split on `/`; `*`
 * matches within one segment; `**` is a whole segment matching one or more
 * segments. Nothing else is special.
 */
export type Glob = string & { readonly __glob: true };

const LITERAL = /^[A-Za-z0-9._*-]+$/;

/** Why a glob is invalid, or undefined when it is valid. */
export function globProblem(glob: string): string | undefined {
  if (glob.length < 1 || glob.length > 200) return 'a glob has 1 to 200 characters';
  for (const seg of glob.split('/')) {
    if (seg === '') return 'a glob has no empty segments';
    if (seg.includes('**') && seg !== '**') return '"**" must be a whole segment';
    if (seg !== '**' && !LITERAL.test(seg)) return 'a glob uses only A-Z a-z 0-9 . _ - * and "/" between segments';
  }
  return undefined;
}

/**
 * Matches segment by segment, in time proportional to the glob's segments
 * times the name's (a regular expression backtracks exponentially on globs
 * such as `** / ** / ** / z` against a long name).
 */
export function globMatches(glob: string, doc: DocName | string): boolean {
  const names = doc.split('/');
  // reach[j]: the glob's segments so far match the name's first j segments.
  let reach: boolean[] = names.map(() => false);
  reach.push(false);
  reach[0] = true;
  for (const seg of glob.split('/')) {
    const next: boolean[] = new Array<boolean>(names.length + 1).fill(false);
    let before = false;
    for (let j = 0; j < names.length; j++) {
      before ||= reach[j]!;
      // `**` takes one or more segments: from any reached point at or before j.
      next[j + 1] = seg === '**' ? before : reach[j]! && segmentMatches(seg, names[j]!);
    }
    reach = next;
  }
  return reach[names.length]!;
}

/** `*` matches any run of characters within the segment; everything else is literal. Linear, with one backtrack point. */
function segmentMatches(glob: string, name: string): boolean {
  let g = 0;
  let n = 0;
  let star = -1;
  let resume = 0;
  while (n < name.length) {
    if (g < glob.length && glob[g] === '*') {
      star = g++;
      resume = n;
    } else if (g < glob.length && glob[g] === name[n]) {
      g++;
      n++;
    } else if (star >= 0) {
      g = star + 1;
      n = ++resume;
    } else return false;
  }
  while (g < glob.length && glob[g] === '*') g++;
  return g === glob.length;
}

export function anyGlobMatches(globs: readonly string[], doc: DocName | string): boolean {
  return globs.some((g) => globMatches(g, doc));
}
