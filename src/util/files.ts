import { randomBytes } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';

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

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
