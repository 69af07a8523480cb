import { open, readFile, realpath, rm, stat } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { ConfigError } from '../errors.js';
import { writeFileAtomic } from '../util/files.js';

/** How long a command waits for another one editing the same file. */
const LOCK_WAIT_MS = 10_000;
/** A lock file left without a pid this long is left over from a crash. */
const LOCK_STALE_MS = 10_000;

/**
 * Replaces a config file so that readers (the daemon's reload) see the old
 * content or the new, never half. A symlink stays a symlink: its target is
 * replaced, in its own folder. The file keeps its mode, and its owner when
 * the command runs as root.
 */
export async function replaceFile(path: string, data: string): Promise<void> {
  const target = await realpath(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return path;
    throw err;
  });
  const before = await stat(target).catch(() => undefined);
  await writeFileAtomic(target, data, 0o644, before);
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
      if (holder.stale && (await breakStaleLock(lock, holder.text))) continue;
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

async function staleHolder(lock: string): Promise<{ stale: boolean; text?: string; pid?: number }> {
  const text = await readFile(lock, 'utf8').catch(() => undefined);
  if (text === undefined) return { stale: false };
  const pid = Number(text);
  if (!Number.isInteger(pid) || pid <= 0) {
    const age = await stat(lock).then((s) => Date.now() - s.mtimeMs, () => 0);
    return { stale: age > LOCK_STALE_MS, text };
  }
  try {
    process.kill(pid, 0);
    return { stale: false, text, pid };
  } catch (err) {
    return { stale: (err as NodeJS.ErrnoException).code === 'ESRCH', text, pid };
  }
}

/**
 * Removes a lock left by a process that is gone, holding `<lock>.break`
 * while it checks that the lock still says what made it stale. Without
 * that, two commands that both saw the stale lock could each remove it,
 * the second removing the lock the first had just taken, and both would
 * edit at once. A `.break` file is only held for a moment; one older than
 * LOCK_STALE_MS was left by a crash. Resolves with whether it removed the lock.
 */
async function breakStaleLock(lock: string, seen: string | undefined): Promise<boolean> {
  const breaker = `${lock}.break`;
  let fh;
  try {
    fh = await open(breaker, 'wx', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    const age = await stat(breaker).then((s) => Date.now() - s.mtimeMs, () => 0);
    if (age > LOCK_STALE_MS) await rm(breaker, { force: true });
    return false;
  }
  try {
    const holder = await staleHolder(lock);
    if (!holder.stale || holder.text !== seen) return false;
    await rm(lock, { force: true });
    return true;
  } finally {
    await fh.close();
    await rm(breaker, { force: true });
  }
}
