import { describe, expect, it } from 'vitest';
import { docNameProblem, isDocName } from '../../../src/config/names.js';

describe('document names (DESIGN.md §7)', () => {
  it.each([
    ['', 'empty'],
    ['..', 'dot-dot'],
    ['.', 'dot'],
    ['notes/..', 'dot-dot segment'],
    ['../notes', 'leading dot-dot segment'],
    ['notes/./a', 'dot segment'],
    ['notes//a', 'empty segment'],
    ['/notes', 'leading slash'],
    ['notes/', 'trailing slash'],
    ['/', 'only a slash'],
    ['notes\u0000a', 'NUL'],
    ['a'.repeat(201), '201 characters'],
    ['notes/a b', 'space'],
    ['notes/a*', 'star'],
    ['notes/a?b', 'question mark'],
    ['notes\\a', 'backslash'],
    ['notes/a%2Fb', 'percent'],
    ['notes/a:b', 'colon'],
    ['notes/é', 'non-ASCII letter'],
    ['notes/\u{1F600}', 'emoji'],
    ['notes/a\nb', 'newline'],
  ])('refuses %j (%s) with a reason', (name) => {
    expect(docNameProblem(name)).toEqual(expect.any(String));
    expect(isDocName(name)).toBe(false);
  });

  it.each([
    'a',
    'notes',
    'notes/a',
    'notes/a/b/c',
    'A-Z_a-z.0-9',
    'notes/.hidden',
    'notes/a..b',
    '...',
    'a'.repeat(200),
    'a/'.repeat(99) + 'bb',
  ])('accepts %j', (name) => {
    expect(docNameProblem(name)).toBeUndefined();
    expect(isDocName(name)).toBe(true);
  });

  it('says which rule failed', () => {
    expect(docNameProblem('a'.repeat(201))).toMatch(/200/);
    expect(docNameProblem('notes/..')).toMatch(/"\.\."/);
    expect(docNameProblem('notes//a')).toMatch(/empty/);
    expect(docNameProblem('notes/a b')).toMatch(/A-Z/);
  });
});
