import type { DocName } from '../types.js';

const SEGMENT = /^[A-Za-z0-9._-]+$/;

/** Why a document name is invalid (DESIGN.md §7), or undefined when it is valid. */
export function docNameProblem(name: string): string | undefined {
  if (name.length < 1 || name.length > 200) return 'a document name has 1 to 200 characters';
  for (const seg of name.split('/')) {
    if (seg === '') return 'a document name has no empty segments';
    if (seg === '.' || seg === '..') return 'a document name has no "." or ".." segments';
    if (!SEGMENT.test(seg)) return 'a document name uses only A-Z a-z 0-9 . _ - and "/" between segments';
  }
  return undefined;
}

export function isDocName(name: string): name is DocName {
  return docNameProblem(name) === undefined;
}
