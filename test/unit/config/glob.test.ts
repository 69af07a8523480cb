import { describe, expect, it } from 'vitest';
import { anyGlobMatches, globMatches, globProblem } from '../../../src/config/glob.js';

/** Every (glob, doc, expected) in one table, so a failure names the case. */
function table(rows: [glob: string, doc: string, matches: boolean][]) {
  return rows.map(([glob, doc, matches]) => ({ glob, doc, matches }));
}

describe('globMatches (DESIGN.md §2 contract)', () => {
  it.each(
    table([
      // `notes/**` matches one or more segments below notes, not notes itself.
      ['notes/**', 'notes/a', true],
      ['notes/**', 'notes/a/b', true],
      ['notes/**', 'notes/a/b/c/d', true],
      ['notes/**', 'notes', false],
      ['notes/**', 'notesx/a', false],
      ['notes/**', 'other/notes/a', false],
      ['notes/**', 'xnotes/a', false],
      // `*` matches within one segment only.
      ['notes/*', 'notes/a', true],
      ['notes/*', 'notes/a.md', true],
      ['notes/*', 'notes/a/b', false],
      ['notes/*', 'notes', false],
      ['*', 'a', true],
      ['*', 'a/b', false],
      ['a*', 'a', true],
      ['a*', 'abc', true],
      ['a*', 'ba', false],
      ['*.md', 'readme.md', true],
      ['*.md', 'readme.txt', false],
      ['*.md', 'dir/readme.md', false],
      ['a*c', 'abc', true],
      ['a*c', 'ac', true],
      ['a*c', 'ab/c', false],
      ['*/x', 'a/x', true],
      ['*/x', 'a/b/x', false],
      // `**` alone matches every document.
      ['**', 'a', true],
      ['**', 'a/b', true],
      ['**', 'a/b/c/d/e', true],
      // `**` in the middle: one or more segments.
      ['a/**/z', 'a/b/z', true],
      ['a/**/z', 'a/b/c/z', true],
      ['a/**/z', 'a/z', false],
      ['**/z', 'a/z', true],
      ['**/z', 'z', false],
      // Nothing else is special: `.` is a literal, not "any character".
      ['notes/a.b', 'notes/a.b', true],
      ['notes/a.b', 'notes/axb', false],
      ['a-b_c', 'a-b_c', true],
      // Literal globs match only themselves, case-sensitively, whole-name.
      ['notes', 'notes', true],
      ['notes', 'Notes', false],
      ['notes', 'notes/a', false],
      ['notes/a', 'notes/ab', false],
    ]),
  )('$glob vs $doc → $matches', ({ glob, doc, matches }) => {
    expect(globProblem(glob)).toBeUndefined();
    expect(globMatches(glob, doc)).toBe(matches);
  });

  it('anyGlobMatches is true when one glob matches, false for an empty list', () => {
    expect(anyGlobMatches(['a/*', 'notes/**'], 'notes/x/y')).toBe(true);
    expect(anyGlobMatches(['a/*', 'b/*'], 'notes/x')).toBe(false);
    expect(anyGlobMatches([], 'notes/x')).toBe(false);
  });
});

describe('globProblem: invalid globs are refused', () => {
  it.each([
    ['', 'empty'],
    ['x'.repeat(201), '201 characters'],
    ['notes/', 'trailing slash (empty segment)'],
    ['/notes', 'leading slash (empty segment)'],
    ['notes//a', 'empty middle segment'],
    ['notes/a**', '"**" not a whole segment'],
    ['**a', '"**" not a whole segment'],
    ['a/***', '"***"'],
    ['notes/?', '"?" is not a glob character'],
    ['notes/[ab]', 'brackets'],
    ['notes/{a,b}', 'braces'],
    ['notes/a b', 'space'],
    ['notes\\a', 'backslash'],
    ['notes/a\u0000', 'NUL'],
    ['notes/é', 'non-ASCII'],
  ])('%j (%s)', (glob) => {
    expect(globProblem(glob)).toEqual(expect.any(String));
  });

  it('"**" must be a whole segment, and says so', () => {
    expect(globProblem('notes/a**')).toMatch(/\*\*.*whole segment/);
  });

  it('accepts globs of exactly 200 characters', () => {
    expect(globProblem('a'.repeat(200))).toBeUndefined();
    expect(globProblem('a/'.repeat(99) + 'bb')).toBeUndefined();
  });
});
