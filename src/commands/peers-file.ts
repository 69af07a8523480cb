import { randomBytes } from 'node:crypto';
import { open, readFile, realpath, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { ConfigError } from '../errors.js';

/** How long a command waits for another one editing the same file. */
const LOCK_WAIT_MS = 10_000;
/** A lock file left without a pid this long is left over from a crash. */
const LOCK_STALE_MS = 10_000;

/**
 * Replaces a config file so that readers (the daemon's reload) see the old
 * content or the new, never half. A symlink stays a symlink: its target is
 * replaced, in its own folder. The file keeps its mode, and its owner when
 * the command runs as root (an admin's `sudo` must not leave a file the
 * daemon's user cannot read).
 */
export async function replaceFile(path: string, data: string): Promise<void> {
  const target = await realpath(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return path;
    throw err;
  });
  const before = await stat(target).catch(() => undefined);
  const tmp = join(dirname(target), `.${basename(target)}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', before ? before.mode & 0o777 : 0o644);
  try {
    await fh.writeFile(data);
    if (before) {
      await fh.chmod(before.mode & 0o777);
      if (process.getuid?.() === 0) await fh.chown(before.uid, before.gid);
    }
    await fh.sync();
    await fh.close();
    await rename(tmp, target);
  } catch (err) {
    await fh.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw err;
  }
  const dir = await open(dirname(target), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

/**
 * Runs `fn` holding `<file>.lock` (created exclusively, holding this pid), so
 * that two commands editing one file at once do not lose each other's
 * change. A lock whose process is gone is taken over.
 */
export async function withFileLock<T>(file: string, fn: () => Promise<T>): Promise<T> {
  const lock = `${file}.lock`;
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      const fh = await open(lock, 'wx', 0o600);
      await fh.writeFile(String(process.pid));
      await fh.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new ConfigError(file, '$', `cannot lock for editing (${lock}: ${(err as NodeJS.ErrnoException).code})`);
      const holder = await staleHolder(lock);
      if (holder.stale) {
        await rm(lock, { force: true });
        continue;
      }
      if (Date.now() > deadline) throw new ConfigError(file, '$', `is being edited by another "tessera peers" command (pid ${holder.pid ?? '?'}, ${lock}); remove that file if no such command runs`);
      await delay(10 + Math.floor(Math.random() * 40));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lock, { force: true });
  }
}

async function staleHolder(lock: string): Promise<{ stale: boolean; pid?: number }> {
  const text = await readFile(lock, 'utf8').catch(() => undefined);
  if (text === undefined) return { stale: false };
  const pid = Number(text);
  if (!Number.isInteger(pid) || pid <= 0) {
    const age = await stat(lock).then((s) => Date.now() - s.mtimeMs, () => 0);
    return { stale: age > LOCK_STALE_MS };
  }
  try {
    process.kill(pid, 0);
    return { stale: false, pid };
  } catch (err) {
    return { stale: (err as NodeJS.ErrnoException).code === 'ESRCH', pid };
  }
}
