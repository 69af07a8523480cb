import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
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

describe('globMatches on hostile shapes', () => {
  /** The contract as a regular expression (what globMatches compiled to before): a reference for small cases. */
  const reference = (glob: string, doc: string) =>
    new RegExp(`^${glob.split('/').map((seg) => (seg === '**' ? '[^/]+(?:/[^/]+)*' : seg.replace(/[.]/g, '\\.').replace(/\*/g, '[^/]*'))).join('/')}$`).test(doc);

  it('agrees with the regular expression of the contract on random globs and names', () => {
    const segment = fc.oneof(fc.constantFrom('**', '*', 'a*', '*b', 'a*b', '*.*'), fc.stringMatching(/^[ab.]{1,3}$/));
    fc.assert(
      fc.property(fc.array(segment, { minLength: 1, maxLength: 5 }), fc.array(fc.stringMatching(/^[ab.]{1,4}$/), { minLength: 1, maxLength: 6 }), (globSegs, nameSegs) => {
        const glob = globSegs.join('/');
        const doc = nameSegs.join('/');
        expect(globMatches(glob, doc), `${glob} against ${doc}`).toBe(reference(glob, doc));
      }),
      { numRuns: 3000 },
    );
  });

  it('does not backtrack: many ** against a 100-segment name, and many * against a long segment, answer at once', () => {
    // As a backtracking regular expression, each of these takes seconds to ages.
    const deep = Array.from({ length: 100 }, () => 'a').join('/');
    expect(globMatches('**/**/**/**/**/**/**/**/**/**/z', deep)).toBe(false);
    expect(globMatches('**/**/**/**/**/**/**/**/**/**/a', deep)).toBe(true);
    expect(globMatches('*a*a*a*a*a*a*a*a*b', 'a'.repeat(199))).toBe(false);
    expect(globMatches('*a*a*a*a*a*a*a*a*a', 'a'.repeat(199))).toBe(true);
  });
});
