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

const cache = new Map<string, RegExp>();

function compile(glob: string): RegExp {
  let re = cache.get(glob);
  if (!re) {
    const body = glob
      .split('/')
      .map((seg) => (seg === '**' ? '[^/]+(?:/[^/]+)*' : seg.replace(/[.]/g, '\\.').replace(/\*/g, '[^/]*')))
      .join('/');
    re = new RegExp(`^${body}$`);
    if (cache.size > 10_000) cache.clear();
    cache.set(glob, re);
  }
  return re;
}

export function globMatches(glob: string, doc: DocName | string): boolean {
  return compile(glob).test(doc);
}

export function anyGlobMatches(globs: readonly string[], doc: DocName | string): boolean {
  return globs.some((g) => globMatches(g, doc));
}
