/**
 * The contract, black-box: DESIGN.md §8 (CLI) and §2 (daemon.json, config errors),
 * checked against the built binary (dist/cli.js) on loopback, port 0.
 * Each test states the contract it holds the daemon to.
 */
import { describe, expect, it } from 'vitest';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as Y from 'yjs';
import { nodeDir, runCli, spawnNode, tempDir, withStore } from '../helpers/node.js';
import { Space } from '../../src/store/store.js';
import { decodeEnvelopeValue, encodeEnvelopeValue } from '../../src/store/records.js';
import { decodeJwt } from 'jose';

type Run = { code: number; stdout: string; stderr: string };

/** DESIGN.md §8: a diagnostic is one line on stderr (no stack), nothing on stdout. */
function oneLine(r: Run, code?: number): string {
  if (code !== undefined) expect(r.code, `exit code; stderr: ${r.stderr}`).toBe(code);
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines, `stderr should be one line, got:\n${r.stderr}`).toHaveLength(1);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  expect(r.stdout).toBe('');
  return lines[0]!;
}

async function token(dir: string, ...scopes: string[]): Promise<string> {
  const r = await runCli(['token', '--data', dir, ...scopes.flatMap((s) => ['--scope', s])]);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim();
}

function update(fn: (d: Y.Doc) => void): Uint8Array {
  const d = new Y.Doc();
  fn(d);
  return Y.encodeStateAsUpdate(d);
}

describe('§8 doc list / doc get through the running node', () => {
  it('doc list prints the names, doc get prints the JSON; results on stdout alone', async () => {
    const { dir } = await nodeDir({ name: 'n' });
    const node = await spawnNode(dir);
    const t = await token(dir, 'write:**');
    const res = await fetch(`http://${node.api}/v1/docs/notes%2Fa/updates`, { method: 'POST', headers: { authorization: `Bearer ${t}` }, body: update((d) => d.getMap('m').set('k', 'v')) });
    expect(res.status).toBe(200);
    const list = await runCli(['doc', 'list', '--data', dir]);
    expect(list).toMatchObject({ code: 0, stdout: 'notes/a\n', stderr: '' });
    const got = await runCli(['doc', 'get', 'notes/a', '--data', dir]);
    expect(got.code, got.stderr).toBe(0);
    expect(JSON.parse(got.stdout)).toEqual({ m: { k: 'v' } });
    expect(got.stderr).toBe('');
  });

  it('doc get of a document the node has never seen: a one-line diagnostic, no stack trace', async () => {
    const { dir } = await nodeDir();
    await spawnNode(dir);
    const r = await runCli(['doc', 'get', 'never/seen', '--data', dir]);
    expect(r.code).not.toBe(0);
    oneLine(r);
  });

  it('bad arguments to doc: a one-line error and exit 2 (an extra positional to "doc list" included)', async () => {
    // A running node, so that exit 2 cannot come from "no node is running".
    const { dir } = await nodeDir();
    await spawnNode(dir);
    for (const args of [['doc'], ['doc', 'get'], ['doc', 'frob'], ['doc', 'list', 'extra'], ['doc', 'get', 'a', 'b']]) {
      const r = await runCli([...args, '--data', dir]);
      expect.soft(r.code, `tessera ${args.join(' ')}: ${r.stdout}${r.stderr}`).toBe(2);
    }
  });
});

describe('§8 bad arguments elsewhere: one line, exit 2', () => {
  it.each([
    [['authority']],
    [['authority', 'init']],
    [['grant', '--authority', 'x']],
    [['revoke', '--authority', 'x', '--node', 'not-an-id']],
    [['start', 'extra']],
    [['verify', 'extra']],
    [['status', 'extra']],
    [['token', 'extra', '--scope', 'read:**']],
    [['peers', 'remove', 'a', 'b']],
  ])('tessera %j', async (args) => {
    const dir = await tempDir();
    oneLine(await runCli(args, { env: { TESSERA_HOME: dir } }), 2);
  });
});

describe('§2/§8 daemon.json: the CLI finds the node through it', () => {
  it('a stale daemon.json whose pid is alive but is not a Tessera node: a one-line diagnostic, no stack', async () => {
    const { dir } = await nodeDir();
    // A live pid (this test process) with an API address nobody listens on: what a SIGKILLed node leaves after pid reuse.
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as AddressInfo).port;
    await new Promise<void>((r) => srv.close(() => r()));
    await writeFile(join(dir, 'daemon.json'), JSON.stringify({ pid: process.pid, peer: `127.0.0.1:${port}`, api: `127.0.0.1:${port}` }));
    const r = await runCli(['status', '--data', dir]);
    expect(r.code).not.toBe(0);
    oneLine(r);
  });

  it('a corrupt daemon.json: a one-line diagnostic, no stack', async () => {
    const { dir } = await nodeDir();
    await writeFile(join(dir, 'daemon.json'), 'garbage');
    const r = await runCli(['status', '--data', dir]);
    expect(r.code).not.toBe(0);
    oneLine(r);
  });
});

describe('§8 tessera token', () => {
  it('without --ttl on a node whose apiTokenMaxTtl is below the 1h default: does not fail over a --ttl never given', async () => {
    const { dir } = await nodeDir({ config: { apiTokenMaxTtl: '30m' } });
    const r = await runCli(['token', '--data', dir, '--scope', 'read:**']);
    expect(r.code, r.stderr).toBe(0);
  });
});

describe('§8 tessera init', () => {
  it('--listen/--api/--name on a folder that already has tessera.json (no identity): applied, or refused; not silently dropped', async () => {
    const dir = join(await tempDir(), 'n');
    await import('node:fs/promises').then((fs) => fs.mkdir(dir));
    await writeFile(join(dir, 'tessera.json'), JSON.stringify({ name: 'old' }));
    const r = await runCli(['init', '--data', dir, '--name', 'new', '--listen', '127.0.0.1:0', '--api', '127.0.0.1:0']);
    const cfg = JSON.parse(await readFile(join(dir, 'tessera.json'), 'utf8')) as Record<string, unknown>;
    const applied = cfg.name === 'new' && cfg.listen === '127.0.0.1:0' && cfg.api === '127.0.0.1:0';
    expect(applied || r.code === 2, `exit ${r.code}, tessera.json now ${JSON.stringify(cfg)}`).toBe(true);
  });
});

describe('§8 tessera id --json', () => {
  it('an IPv6 listen address gives a bracketed ws:// url that the peers file accepts; [::] gives none', async () => {
    const dir = join(await tempDir(), 'n');
    expect((await runCli(['init', '--data', dir, '--name', 'v6', '--listen', '[::1]:7411'])).code).toBe(0);
    expect(JSON.parse((await runCli(['id', '--data', dir, '--json'])).stdout)).toMatchObject({ url: 'ws://[::1]:7411' });
    const wild = join(await tempDir(), 'n');
    expect((await runCli(['init', '--data', wild, '--listen', '[::]:7411'])).code).toBe(0);
    expect(JSON.parse((await runCli(['id', '--data', wild, '--json'])).stdout)).not.toHaveProperty('url');
  });
});

describe('§8 tessera verify', () => {
  it('exit 1 and the problem printed when a stored envelope was tampered with, offline and through the running node', async () => {
    const { dir } = await nodeDir();
    let node = await spawnNode(dir);
    const t = await token(dir, 'write:**');
    const res = await fetch(`http://${node.api}/v1/docs/d/updates`, { method: 'POST', headers: { authorization: `Bearer ${t}` }, body: update((d) => d.getText('t').insert(0, 'hello')) });
    expect(res.status).toBe(200);
    expect(await node.stop()).toBe(0);
    const clean = await runCli(['verify', '--data', dir]);
    expect(clean.code, clean.stdout + clean.stderr).toBe(0);

    // Flip the update bytes of the one envelope (its token's h no longer matches).
    await withStore(dir, async (store) => {
      for await (const [key, value] of store.entries(Space.envelope)) {
        const { token: tok, update: u } = decodeEnvelopeValue(value);
        const bad = Uint8Array.from(u);
        bad[bad.length - 2] ^= 0xff;
        await store.write([{ type: 'put', space: Space.envelope, key, value: encodeEnvelopeValue(tok, bad) }]);
      }
    });
    const offline = await runCli(['verify', '--data', dir]);
    expect(offline.code, offline.stdout + offline.stderr).toBe(1);
    expect(offline.stdout).toMatch(/d/);
    const offlineJson = await runCli(['verify', '--data', dir, '--json']);
    expect(offlineJson.code).toBe(1);
    expect((JSON.parse(offlineJson.stdout) as { ok: boolean; problems: unknown[] }).problems.length).toBeGreaterThan(0);

    node = await spawnNode(dir);
    const live = await runCli(['verify', '--data', dir, '--json']);
    expect(live.code, live.stderr).toBe(1);
    expect((JSON.parse(live.stdout) as { ok: boolean }).ok).toBe(false);
  });
});

describe('§10 authority commands', () => {
  it('authority init: one JSON line {name,id,publicKey}, key file 0600, refuses to overwrite (exit 2)', async () => {
    const out = join(await tempDir(), 'admin.key');
    const r = await runCli(['authority', 'init', '--out', out, '--name', 'admin']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n')).toHaveLength(1);
    const entry = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(Object.keys(entry).sort()).toEqual(['id', 'name', 'publicKey']);
    expect((await stat(out)).mode & 0o777).toBe(0o600);
    oneLine(await runCli(['authority', 'init', '--out', out]), 2);
  });

  it('revoke without --cutoff signs the cutoff {"*":{}}', async () => {
    const out = join(await tempDir(), 'admin.key');
    await runCli(['authority', 'init', '--out', out]);
    const { id } = await nodeDir();
    const r = await runCli(['revoke', '--authority', out, '--node', id]);
    expect(r.code, r.stderr).toBe(0);
    const claims = decodeJwt(r.stdout.trim()) as Record<string, unknown>;
    expect(JSON.stringify(claims)).toContain('"*":{}');
  });
});

describe('§2/§8 start: config errors name the file and JSON path, exit 2', () => {
  it('an API port already in use names $.api', async () => {
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as AddressInfo).port;
    try {
      const { dir } = await nodeDir({ config: { api: `127.0.0.1:${port}` } });
      const r = await runCli(['start', '--data', dir]);
      expect(oneLine({ ...r, stdout: '' }, 2)).toContain(`${join(dir, 'tessera.json')}: $.api`);
    } finally {
      await new Promise<void>((r) => srv.close(() => r()));
    }
  });

  it('an invalid grants file names the grants file and the JSON path', async () => {
    const { dir } = await nodeDir();
    await writeFile(join(dir, 'grants.json'), JSON.stringify({ grants: ['not a jws'], revocations: [] }));
    const r = await runCli(['start', '--data', dir]);
    expect(oneLine({ ...r, stdout: '' }, 2)).toContain(`${join(dir, 'grants.json')}: $.grants[0]`);
  });

  it.each([['handshakeTimeout'], ['heartbeatInterval'], ['sessionTtl'], ['docIdleTimeout'], ['announceInterval'], ['rateLimitWindow'], ['reconnectMax']])(
    'a zero duration for %s: refused as a config error (exit 2 naming the path), or the node serves normally',
    async (key) => {
      const { dir } = await nodeDir({ config: { [key]: '0s' } });
      let node;
      try {
        node = await spawnNode(dir);
      } catch (err) {
        // Refused: it must be the §8 config error shape.
        expect(String(err)).toContain(`$.${key}`);
        return;
      }
      const h = await fetch(`http://${node.api}/healthz`);
      expect(h.status).toBe(200);
      // Still serving a second later (no busy loop or crash).
      await new Promise((r) => setTimeout(r, 1000));
      expect((await fetch(`http://${node.api}/healthz`)).status).toBe(200);
      expect(await node.stop()).toBe(0);
    },
  );
});

describe('§8 start: stdout is pino JSON lines only', () => {
  it('every stdout line of a run (start, requests, stop) parses as JSON', async () => {
    const { dir } = await nodeDir();
    const node = await spawnNode(dir);
    await fetch(`http://${node.api}/v1/status`);
    expect(await node.stop('SIGINT')).toBe(0);
    expect(node.lines.every((l) => typeof l.level === 'number' && typeof l.msg === 'string')).toBe(true);
  });
});
