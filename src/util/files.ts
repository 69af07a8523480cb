import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { copyFile, link, open, rename, rm } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';

/** Where a file system has no hard links, a file is copied into place instead (still exclusively). */
const NO_HARD_LINKS = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP']);

/**
 * Writes a file so that readers see the old content or the new, never half:
 * a temp file in the same folder, fsynced, then renamed over the target.
 * `keep` gives the new file the mode of the one it replaces exactly, and
 * its owner when this process runs as root (an admin's `sudo` must not
 * leave a file the daemon's user cannot read).
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644, keep?: { readonly mode: number; readonly uid: number; readonly gid: number }): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', keep ? keep.mode & 0o777 : mode);
  try {
    await fh.writeFile(data);
    if (keep) {
      await fh.chmod(keep.mode & 0o777);
      if (process.getuid?.() === 0) await fh.chown(keep.uid, keep.gid);
    }
    await fh.sync();
  } catch (err) {
    await fh.close();
    await rm(tmp, { force: true });
    throw err;
  }
  await fh.close();
  try {
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await syncDir(dirname(path));
}

/**
 * Creates `path` with `data` only if nothing is there at that moment, whole
 * or not at all: written (with `mode` from the first byte) and fsynced under
 * a temp name beside it, then hard-linked to `path`, which fails with EEXIST
 * if anything got there first. (Checking first and renaming after, two
 * writers at once would both succeed and one file would replace the other.)
 */
export async function createFileExclusive(path: string, data: string | Uint8Array, mode: number): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.new`);
  const fh = await open(tmp, 'wx', mode);
  try {
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await link(tmp, path).catch(async (err: NodeJS.ErrnoException) => {
      if (!NO_HARD_LINKS.has(err.code ?? '')) throw err;
      await copyFile(tmp, path, constants.COPYFILE_EXCL);
      // A copy is not atomic: durable before it counts as made.
      const copy = await open(path, 'r');
      try {
        await copy.sync();
      } finally {
        await copy.close();
      }
    });
  } finally {
    await rm(tmp, { force: true });
  }
  await syncDir(dirname(path));
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
