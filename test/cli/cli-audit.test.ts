/**
 * An audit of the command-line tools, as an operator and as an attacker
 * would use them: key files, bad arguments, data directories, daemon.json,
 * tokens, grants and the peers-file lock. Each test names what it holds the
 * CLI to; most run the built binary (dist/cli.js).
 */
import { describe, expect, it, onTestFinished } from 'vitest';
import { execFile } from 'node:child_process';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { chmod, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { CLI, nodeDir, runCli, spawnNode, startDaemon, tempDir } from '../helpers/node.js';
import { authorityInitCommand } from '../../src/commands/authority.js';
import { withFileLock } from '../../src/commands/peers-file.js';
import { readKeyFile } from '../../src/identity/file.js';
import { initDataDir } from '../../src/init.js';
import type { KeyPair } from '../../src/identity/keys.js';

type Run = { code: number; stdout: string; stderr: string };

/** DESIGN.md §8: a refusal is one line on stderr, no stack trace, nothing on stdout. */
function refused(r: Run, code?: number): string {
  if (code !== undefined) expect(r.code, `exit code; stderr: ${r.stderr}`).toBe(code);
  else expect(r.code, `stderr: ${r.stderr}`).not.toBe(0);
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines, `stderr should be one line, got:\n${r.stderr}`).toHaveLength(1);
  expect(lines[0]).toMatch(/^tessera: /);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  expect(r.stdout).toBe('');
  return lines[0]!;
}

/** An HTTP server standing in for whatever holds an address a daemon.json names; it records the headers it is sent. */
async function spy(host: string, answer: (path: string) => { status: number; body: string }) {
  const seen: { path: string; headers: IncomingHttpHeaders }[] = [];
  const srv = createServer((req, res) => {
    seen.push({ path: req.url ?? '', headers: req.headers });
    const a = answer(req.url ?? '');
    res.writeHead(a.status, { 'content-type': 'application/json', connection: 'close' }).end(a.body);
  });
  await new Promise<void>((r) => srv.listen(0, host, r));
  let closed: Promise<void> | undefined;
  const close = () => (closed ??= new Promise<void>((r) => srv.close(() => r())));
  onTestFinished(close);
  return { port: (srv.address() as AddressInfo).port, seen, close };
}

/** A daemon.json as a node killed with SIGKILL leaves it, its pid now alive (this test process). */
async function staleDaemonFile(dir: string, api: string): Promise<void> {
  await writeFile(join(dir, 'daemon.json'), JSON.stringify({ pid: process.pid, peer: api, api }) + '\n');
}

describe('daemon.json: the CLI sends its token to a Tessera API on loopback only', () => {
  it('an "api" on a non-loopback address is refused before any request, let alone a token', async () => {
    const { dir } = await nodeDir();
    // The CLI must refuse it from daemon.json alone, without connecting.
    await staleDaemonFile(dir, 'node.example:7401');
    for (const args of [['status'], ['doc', 'list'], ['verify']]) {
      expect(refused(await runCli([...args, '--data', dir])), args.join(' ')).toMatch(/\$\.api: .*not a loopback address/);
    }
  });

  it('another program on the loopback port a stale daemon.json names gets no token, and, as when nothing holds the port, the message says to remove daemon.json', async () => {
    const { dir } = await nodeDir();
    const s = await spy('127.0.0.1', () => ({ status: 404, body: '{}' }));
    await staleDaemonFile(dir, `127.0.0.1:${s.port}`);
    for (const args of [['status'], ['doc', 'list'], ['verify']]) {
      expect(refused(await runCli([...args, '--data', dir])), args.join(' ')).toContain(join(dir, 'daemon.json'));
    }
    expect(s.seen.filter((r) => r.headers.authorization !== undefined)).toEqual([]);
    // Once nothing holds that port either, the message still names the file to remove.
    await s.close();
    expect(refused(await runCli(['status', '--data', dir]))).toContain(join(dir, 'daemon.json'));
  });

  it('a node whose API binds a wildcard address is reached through loopback', async () => {
    const { dir, id } = await nodeDir({ config: { api: '0.0.0.0:0' } });
    await spawnNode(dir);
    const r = await runCli(['status', '--data', dir, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ id });
  });
});

describe('tessera authority init', () => {
  it('--out in a folder that does not exist: one line, exit 2 (no stack trace)', async () => {
    const out = join(await tempDir(), 'missing', 'admin.key');
    expect(refused(await runCli(['authority', 'init', '--out', out]), 2)).toContain('--out');
  });

  it('a --name the peers file would refuse for an authority: exit 2, and no key is written', async () => {
    const work = await tempDir();
    for (const name of ['', 'x'.repeat(101)]) {
      refused(await runCli(['authority', 'init', '--out', join(work, 'admin.key'), '--name', name]), 2);
    }
    expect(await readdir(work)).toEqual([]);
  });

  it('two at once to one --out: exactly one succeeds, and the key on disk is the one whose entry it printed', async () => {
    for (let i = 0; i < 5; i++) {
      const out = join(await tempDir(), 'admin.key');
      const results = await Promise.allSettled([authorityInitCommand(out, 'a'), authorityInitCommand(out, 'b')]);
      const ok = results.filter((r): r is PromiseFulfilledResult<string> => r.status === 'fulfilled');
      expect(ok, 'both wrote the key file: one key silently replaced the other').toHaveLength(1);
      expect(results.find((r) => r.status === 'rejected')).toMatchObject({ reason: { code: 'ERR_KEY_EXISTS' } });
      expect((JSON.parse(ok[0]!.value) as { id: string }).id).toBe((await readKeyFile(out)).id);
      expect((await stat(out)).mode & 0o777).toBe(0o600);
      expect(await readdir(join(out, '..'))).toEqual(['admin.key']);
    }
  });

  it("two inits of one data directory at once: exactly one succeeds, and identity.json holds the id it printed", async () => {
    for (let i = 0; i < 5; i++) {
      const dir = join(await tempDir(), 'node');
      const results = await Promise.allSettled([initDataDir(dir, { name: 'a' }), initDataDir(dir, { name: 'a' })]);
      const ok = results.filter((r): r is PromiseFulfilledResult<KeyPair> => r.status === 'fulfilled');
      expect(ok, 'both wrote identity.json: one key silently replaced the other').toHaveLength(1);
      expect(results.find((r) => r.status === 'rejected')).toMatchObject({ reason: { code: 'ERR_KEY_EXISTS' } });
      expect(ok[0]!.value.id).toBe((await readKeyFile(join(dir, 'identity.json'))).id);
      expect((await stat(join(dir, 'identity.json'))).mode & 0o777).toBe(0o600);
    }
  });

  it('under umask 000 the key file is still 0600, no temp file stays, and nothing printed holds the private key', async () => {
    const work = await tempDir();
    const out = join(work, 'admin.key');
    const r = await new Promise<Run>((resolve) =>
      execFile('/bin/sh', ['-c', 'umask 000 && exec "$0" "$1" authority init --out "$2"', process.execPath, CLI, out], (err, stdout, stderr) =>
        resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
      ),
    );
    expect(r.code, r.stderr).toBe(0);
    expect((await stat(out)).mode & 0o777).toBe(0o600);
    expect(await readdir(work)).toEqual(['admin.key']);
    const d = (JSON.parse(await readFile(out, 'utf8')) as { privateKey: { d: string } }).privateKey.d;
    expect(r.stdout + r.stderr).not.toContain(d);
  });
});

describe('--data that is not a folder', () => {
  it.each([['init'], ['start']])('tessera %s --data FILE: one line, exit 2 (no stack trace)', async (command) => {
    const file = join(await tempDir(), 'file');
    await writeFile(file, 'not a folder');
    expect(refused(await runCli([command, '--data', file]), 2)).toContain(file);
    expect(refused(await runCli([command, '--data', join(file, 'below')]), 2)).toContain(file);
  });

  it('peers revoke on a folder that holds no node says so (not that no such peer is listed)', async () => {
    const dir = await tempDir();
    expect(refused(await runCli(['peers', 'revoke', '--data', dir, 'berlin']), 2)).toContain(join(dir, 'identity.json'));
  });
});

describe('bad arguments', () => {
  it('a flag that takes one value, given twice, is refused (exit 2), not silently the last one', async () => {
    const { dir } = await nodeDir();
    const { dir: other } = await nodeDir();
    refused(await runCli(['token', '--data', dir, '--data', other, '--scope', 'read:**']), 2);
    refused(await runCli(['token', '--data', dir, '--scope', 'read:**', '--ttl', '1h', '--ttl', '30d']), 2);
  });
});

describe('tessera token: what it prints, the node accepts', () => {
  it('more scopes than the node accepts in a token: exit 2, no token printed', async () => {
    const { dir } = await nodeDir();
    const scopes = Array.from({ length: 65 }, (_, i) => ['--scope', `read:d${i}`]).flat();
    expect(refused(await runCli(['token', '--data', dir, ...scopes]), 2)).toMatch(/scope/);
    const fine = await runCli(['token', '--data', dir, ...scopes.slice(0, 128)]);
    expect(fine.code, fine.stderr).toBe(0);
  });
});

describe('tessera grant', () => {
  it('a --ttl whose expiry no node can represent (a node holding that grant cannot start): exit 2', async () => {
    const work = await tempDir();
    const key = join(work, 'admin.key');
    expect((await runCli(['authority', 'init', '--out', key])).code).toBe(0);
    const { dir } = await nodeDir();
    const idFile = join(work, 'node.json');
    await writeFile(idFile, (await runCli(['id', '--data', dir, '--json'])).stdout);
    expect(refused(await runCli(['grant', '--authority', key, '--node', idFile, '--read', '**', '--ttl', '100000000d']), 2)).toContain('--ttl');
    expect((await runCli(['grant', '--authority', key, '--node', idFile, '--read', '**', '--ttl', '3650d'])).code).toBe(0);
  });
});

describe('the peers-file lock', () => {
  it('a lock left by a crashed command is taken over by one command at a time', async () => {
    const file = join(await tempDir(), 'peers.json');
    for (let trial = 0; trial < 10; trial++) {
      // A pid no process has (above Linux's pid_max).
      await writeFile(`${file}.lock`, '99999999');
      let inside = 0;
      let most = 0;
      await Promise.all(
        Array.from({ length: 16 }, async (_, i) => {
          await delay(i % 4);
          await withFileLock(file, async () => {
            most = Math.max(most, ++inside);
            await delay(20);
            inside--;
          });
        }),
      );
      expect(most, `trial ${trial}: editors holding the lock at once`).toBe(1);
    }
    expect(await readdir(join(file, '..'))).toEqual([]);
  });
});

describe('what the CLI prints for a person or a script', () => {
  it("tessera status shows a peer's name with its control characters escaped: no terminal escapes, no forged lines", async () => {
    const { dir } = await nodeDir({ name: 'a' });
    const { dir: other } = await nodeDir({ name: 'b' });
    const entry = JSON.parse((await runCli(['id', '--data', other, '--json'])).stdout) as Record<string, unknown>;
    entry.name = 'evil\u001b[2J\u001b[31m\nnode   forged (line)\u202e';
    const entryFile = join(await tempDir(), 'evil.json');
    await writeFile(entryFile, JSON.stringify(entry));
    expect((await runCli(['peers', 'add', '--data', dir, '--entry', entryFile])).code).toBe(0);
    await spawnNode(dir);
    const r = await runCli(['status', '--data', dir]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]/);
    expect(r.stdout.split('\n').filter((l) => l.startsWith('node'))).toHaveLength(1);
    expect(r.stdout).toContain('evil\\u001b[2J');
  });

  it('doc list on a node without documents prints nothing (not one empty name)', async () => {
    const { dir } = await nodeDir();
    await spawnNode(dir);
    const r = await runCli(['doc', 'list', '--data', dir]);
    expect(r).toEqual({ code: 0, stdout: '', stderr: '' });
  });
});

describe('the data directory', () => {
  it('a node started on a folder other users may read says so once, and names the fix', async () => {
    const { dir } = await nodeDir({ name: 'open' });
    await chmod(dir, 0o755);
    const open = await startDaemon({ dir });
    const warned = open.lines.filter((l) => String(l.msg).startsWith('the data directory is open to other users'));
    expect(warned).toEqual([expect.objectContaining({ dataDir: dir, mode: '0755' })]);
    // The store itself is made for this user alone.
    expect((await stat(join(dir, 'store'))).mode & 0o777).toBe(0o700);
    await open.daemon.stop();
    await chmod(dir, 0o700);
    const closed = await startDaemon({ dir });
    expect(closed.lines.some((l) => String(l.msg).startsWith('the data directory is open to other users'))).toBe(false);
  });
});
