/**
 * createFileExclusive (key files): the file appears whole with its mode or
 * not at all, a second create gets EEXIST, no temp file stays behind when
 * writing fails, and where the file system has no hard links the copy is
 * made exclusively. Faults are injected into node:fs/promises.
 */
import { mkdtemp, readdir, readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';

const linkFails = { code: undefined as string | undefined };
vi.mock('node:fs/promises', async (orig) => {
  const real = await orig<typeof import('node:fs/promises')>();
  return {
    ...real,
    link: (a: string, b: string) => (linkFails.code ? Promise.reject(Object.assign(new Error('no hard links'), { code: linkFails.code })) : real.link(a, b)),
  };
});

const { createFileExclusive } = await import('../../../src/util/files.js');

describe('createFileExclusive', () => {
  it('leaves no temp file (holding part of a key) when writing it fails', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'review2-'));
    // Stands in for ENOSPC / EIO during the write: open succeeded, writeFile throws.
    await expect(createFileExclusive(join(dir, 'identity.json'), { not: 'bytes' } as never, 0o600)).rejects.toThrow();
    expect(await readdir(dir)).toEqual([]);
  });

  it('without hard links (EPERM), copies into place exclusively, mode 0600, no temp left', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'review2-'));
    linkFails.code = 'EPERM';
    try {
      await createFileExclusive(join(dir, 'k.json'), 'secret\n', 0o600);
      expect(await readFile(join(dir, 'k.json'), 'utf8')).toBe('secret\n');
      expect((await stat(join(dir, 'k.json'))).mode & 0o777).toBe(0o600);
      expect(await readdir(dir)).toEqual(['k.json']);
      await expect(createFileExclusive(join(dir, 'k.json'), 'other\n', 0o600)).rejects.toMatchObject({ code: 'EEXIST' });
      expect(await readdir(dir)).toEqual(['k.json']);
    } finally {
      linkFails.code = undefined;
    }
  });
});
