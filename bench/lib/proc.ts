import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';

/** A server running in a child process, so that clients and servers never share an event loop. */
export interface ChildServer {
  readonly child: ChildProcess;
  readonly pid: number;
  /** The last lines it printed (stdout and stderr), for diagnostics. */
  readonly tail: string[];
  /** Resident set size in bytes (Linux /proc), or undefined elsewhere. */
  rss(): Promise<number | undefined>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it has exited. */
  stop(graceMs?: number): Promise<void>;
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

/**
 * Spawns `node ARGS` and resolves with the first stdout line for which
 * `ready` returns a value. Output is read to the end (a child that fills its
 * pipe would block on its synchronous logger) and the last lines kept.
 */
export async function spawnServer<T>(args: string[], opts: { env?: NodeJS.ProcessEnv; ready: (line: string) => T | undefined; timeoutMs?: number; what: string }): Promise<{ server: ChildServer; ready: T }> {
  const child = spawn(process.execPath, args, { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => {
    live.delete(child);
    resolve();
  }));
  const tail: string[] = [];
  const keep = (line: string) => {
    tail.push(line);
    if (tail.length > 200) tail.shift();
  };
  createInterface({ input: child.stderr! }).on('line', keep);
  const lines = createInterface({ input: child.stdout! });
  const server: ChildServer = {
    child,
    pid: child.pid!,
    tail,
    rss: () => rssOf(child.pid!),
    stop: async (graceMs = 10_000) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
  const ready = await new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${opts.what} did not become ready in time:\n${tail.slice(-20).join('\n')}`)), opts.timeoutMs ?? 30_000);
    let done = false;
    lines.on('line', (line) => {
      keep(line);
      if (done) return;
      const v = opts.ready(line);
      if (v !== undefined) {
        done = true;
        clearTimeout(timer);
        resolve(v);
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      if (!done) reject(new Error(`${opts.what} exited with ${child.exitCode ?? child.signalCode}:\n${tail.slice(-20).join('\n')}`));
    });
  });
  return { server, ready };
}

/** VmRSS of a process in bytes (Linux), undefined where /proc is not there. */
export async function rssOf(pid: number): Promise<number | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const kb = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1];
    return kb === undefined ? undefined : Number(kb) * 1024;
  } catch {
    return undefined;
  }
}

/** CPU time (user + system, all threads) a process has used so far, in ms (Linux), undefined where /proc is not there. */
export async function cpuMsOf(pid: number): Promise<number | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime, fields 14 and 15 of stat(5), in clock ticks (100 per second on Linux).
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return undefined;
  }
}
