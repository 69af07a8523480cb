import { describe, expect, it, onTestFinished } from 'vitest';
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { existsSync } from 'node:fs';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { CLI, nodeDir, runCli, spawnNode, tempDir, writePeers } from '../helpers/node.js';
import { parsePeers } from '../../src/config/peers.js';
import { readKeyFile } from '../../src/identity/file.js';
import { generateKeyPair } from '../../src/identity/keys.js';
import { issueApiToken } from '../../src/tokens/api-token.js';
import type { NodeId } from '../../src/types.js';

/** A diagnostic is one line on stderr, prefixed, with no stack trace; stdout stays clean. */
function expectOneLineError(r: { code: number; stdout: string; stderr: string }, code = 2): string {
  expect(r.code, `stderr: ${r.stderr}`).toBe(code);
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^tessera: /);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  expect(r.stderr).not.toMatch(/Error: /);
  return lines[0]!;
}

/** Runs `tessera start` expecting it to exit; killed at teardown should it not. */
function startExpectingExit(dir: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, 'start', '--data', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  const done = new Promise<{ code: number; stdout: string; stderr: string }>((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
  onTestFinished(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await done;
    }
  });
  return done;
}

/** A raw HTTP GET, so that the Host header can be anything. */
function get(api: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: unknown }> {
  const [host, port] = [api.slice(0, api.lastIndexOf(':')), Number(api.slice(api.lastIndexOf(':') + 1))];
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path, method: 'GET', headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? (JSON.parse(text) as unknown) : undefined }));
    });
    req.on('error', reject);
    req.end();
  });
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** Polls until `fn` returns a value; the timeout bounds a failure, it never decides success. */
async function until<T>(fn: () => Promise<T | undefined>, what: string, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function token(dir: string, ...scopes: string[]): Promise<string> {
  const r = await runCli(['token', '--data', dir, ...scopes.flatMap((s) => ['--scope', s])]);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim();
}

async function privateD(dir: string): Promise<string> {
  return (JSON.parse(await readFile(join(dir, 'identity.json'), 'utf8')) as { privateKey: { d: string } }).privateKey.d;
}

describe('tessera init', () => {
  it('prints the node id, writes identity (0600) and config, and refuses (exit 2) to overwrite', async () => {
    const dir = join(await tempDir(), 'node');
    const r = await runCli(['init', '--data', dir, '--name', 'berlin', '--listen', '127.0.0.1:0', '--api', '127.0.0.1:0']);
    expect(r.code, r.stderr).toBe(0);
    const id = r.stdout.trim();
    expect(r.stdout).toBe(`${id}\n`);
    expect((await readKeyFile(join(dir, 'identity.json'))).id).toBe(id);
    expect((await stat(join(dir, 'identity.json'))).mode & 0o777).toBe(0o600);
    expect(JSON.parse(await readFile(join(dir, 'tessera.json'), 'utf8'))).toEqual({ name: 'berlin', listen: '127.0.0.1:0', api: '127.0.0.1:0' });

    const before = await readFile(join(dir, 'identity.json'), 'utf8');
    const again = await runCli(['init', '--data', dir]);
    const line = expectOneLineError(again);
    expect(line).toMatch(/already exists/);
    expect(again.stdout).toBe('');
    expect(await readFile(join(dir, 'identity.json'), 'utf8')).toBe(before);
  });

  it('uses $TESSERA_HOME, else ./.tessera', async () => {
    const cwd = await tempDir();
    const plain = await runCli(['init', '--name', 'x'], { cwd, env: { TESSERA_HOME: undefined } });
    expect(plain.code, plain.stderr).toBe(0);
    expect((await readKeyFile(join(cwd, '.tessera', 'identity.json'))).id).toBe(plain.stdout.trim());

    const home = join(cwd, 'home');
    const viaEnv = await runCli(['init', '--name', 'y'], { cwd, env: { TESSERA_HOME: home } });
    expect(viaEnv.code, viaEnv.stderr).toBe(0);
    expect((await readKeyFile(join(home, 'identity.json'))).id).toBe(viaEnv.stdout.trim());
  });

  it('refuses a bad --listen, --api or --name (exit 2) and creates nothing', async () => {
    const dir = join(await tempDir(), 'node');
    expect(expectOneLineError(await runCli(['init', '--data', dir, '--listen', 'nowhere']))).toMatch(/--listen/);
    expect(expectOneLineError(await runCli(['init', '--data', dir, '--api', '127.0.0.1:99999']))).toMatch(/--api/);
    // A name tessera.json would refuse must not be written there.
    expect(expectOneLineError(await runCli(['init', '--data', dir, '--name', '']))).toMatch(/--name/);
    expect(expectOneLineError(await runCli(['init', '--data', dir, '--name', 'x'.repeat(101)]))).toMatch(/--name/);
    expect(existsSync(join(dir, 'identity.json'))).toBe(false);
  });
});

describe('tessera id', () => {
  it('prints the id; --json is a peers entry another node accepts once read/write are added (no url on port 0)', async () => {
    const { dir, id } = await nodeDir({ name: 'lisbon' });
    const plain = await runCli(['id', '--data', dir]);
    expect(plain).toMatchObject({ code: 0, stdout: `${id}\n` });

    const r = await runCli(['id', '--data', dir, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n')).toHaveLength(1);
    const entry = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(Object.keys(entry).sort()).toEqual(['id', 'name', 'publicKey']);
    expect(entry).toMatchObject({ name: 'lisbon', id, publicKey: { kty: 'OKP', crv: 'Ed25519' } });
    expect(r.stdout).not.toContain(await privateD(dir));

    const other = await generateKeyPair();
    const config = parsePeers('peers.json', { peers: [{ ...entry, read: ['notes/**'], write: [] }] }, other.id);
    expect(config.peers[0]).toMatchObject({ name: 'lisbon', id, read: ['notes/**'], write: [] });
  });

  it('--json includes a ws:// url for a dialable listen address, none for a wildcard host', async () => {
    const dir = join(await tempDir(), 'node');
    expect((await runCli(['init', '--data', dir, '--name', 'n', '--listen', '127.0.0.1:7999'])).code).toBe(0);
    const entry = JSON.parse((await runCli(['id', '--data', dir, '--json'])).stdout) as Record<string, unknown>;
    expect(entry.url).toBe('ws://127.0.0.1:7999');
    expect(parsePeers('peers.json', { peers: [entry] }, (await generateKeyPair()).id).peers[0]!.url).toBe('ws://127.0.0.1:7999');

    const wild = join(await tempDir(), 'node');
    expect((await runCli(['init', '--data', wild, '--listen', '0.0.0.0:7400'])).code).toBe(0);
    expect(JSON.parse((await runCli(['id', '--data', wild, '--json'])).stdout)).not.toHaveProperty('url');
  });

  it('on a folder without an identity exits 2 naming the file', async () => {
    const dir = await tempDir();
    expect(expectOneLineError(await runCli(['id', '--data', dir]))).toContain(join(dir, 'identity.json'));
  });
});

describe('tessera token', () => {
  it('prints a JWT with the scopes that the running node accepts on /v1/status', async () => {
    const { dir, id } = await nodeDir({ name: 'alpha' });
    const r = await runCli(['token', '--data', dir, '--scope', 'read:notes/**', '--scope', 'write:notes/**', '--ttl', '1h']);
    expect(r.code, r.stderr).toBe(0);
    const jwt = r.stdout.trim();
    expect(r.stdout).toBe(`${jwt}\n`);
    expect(jwt).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    expect(decodeProtectedHeader(jwt)).toMatchObject({ alg: 'EdDSA', typ: 'tessera-api+jwt' });
    const claims = decodeJwt(jwt);
    expect(claims).toMatchObject({ iss: id, aud: id, scope: ['read:notes/**', 'write:notes/**'] });
    expect(claims.exp! - claims.iat!).toBe(3600);

    const node = await spawnNode(dir);
    const res = await get(node.api, '/v1/status', bearer(jwt));
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ id, name: 'alpha', peers: [], docs: 0 });
  });

  it('a --ttl above apiTokenMaxTtl exits 2', async () => {
    const { dir } = await nodeDir();
    expect(expectOneLineError(await runCli(['token', '--data', dir, '--scope', 'read:**', '--ttl', '31d']))).toMatch(/apiTokenMaxTtl/);
    expect((await runCli(['token', '--data', dir, '--scope', 'read:**', '--ttl', '30d'])).code).toBe(0);

    const { dir: short } = await nodeDir({ config: { apiTokenMaxTtl: '1h' } });
    expectOneLineError(await runCli(['token', '--data', short, '--scope', 'read:**', '--ttl', '2h']));
    expect((await runCli(['token', '--data', short, '--scope', 'read:**', '--ttl', '1h'])).code).toBe(0);
  });

  it('refuses a missing or bad scope, and a bad --ttl (exit 2)', async () => {
    const { dir } = await nodeDir();
    expect(expectOneLineError(await runCli(['token', '--data', dir]))).toMatch(/--scope/);
    expect(expectOneLineError(await runCli(['token', '--data', dir, '--scope', 'admin']))).toMatch(/read:<glob>/);
    expectOneLineError(await runCli(['token', '--data', dir, '--scope', 'read:notes//x']));
    for (const ttl of ['forever', '0s', '1.5h', '-1h']) expectOneLineError(await runCli(['token', '--data', dir, '--scope', 'read:**', '--ttl', ttl]));
  });
});

describe('bad arguments', () => {
  it.each([
    [['init', '--bogus']],
    [['start', '--bogus']],
    [['id', '--json', 'extra']],
    [['frobnicate']],
    [['peers']],
    [['peers', 'frob']],
    [['peers', 'remove']],
    [['peers', 'add']],
    [['token', '--scope']],
    [['status', '--data']],
    [['init', '--data', '-x']],
  ])('tessera %j exits 2 with a one-line error', async (args) => {
    const dir = await tempDir();
    const r = await runCli(args, { env: { TESSERA_HOME: dir } });
    expectOneLineError(r);
    expect(r.stdout).toBe('');
  });

  it('--help prints usage and exits 0', async () => {
    const r = await runCli(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Usage: tessera/);
  });
});

describe('tessera start: refusals', () => {
  it('an unknown key in tessera.json: exit 2, one line naming the file and JSON path, no stack', async () => {
    const { dir } = await nodeDir({ config: { listne: '127.0.0.1:0' } });
    const line = expectOneLineError(await startExpectingExit(dir));
    expect(line).toContain(join(dir, 'tessera.json'));
    expect(line).toContain('$.listne');
    expect(line).toMatch(/unknown key "listne"/);
  });

  it('a bad value in tessera.json names its path', async () => {
    const { dir } = await nodeDir({ config: { sessionTtl: '1 hour' } });
    const line = expectOneLineError(await startExpectingExit(dir));
    expect(line).toContain(`${join(dir, 'tessera.json')}: $.sessionTtl:`);
  });

  it('tessera.json that is not JSON', async () => {
    const { dir } = await nodeDir();
    await writeFile(join(dir, 'tessera.json'), '{ "listen": ');
    expect(expectOneLineError(await startExpectingExit(dir))).toContain(`${join(dir, 'tessera.json')}: $:`);
  });

  it('a bad peers file: exit 2, one line naming the peers file and JSON path', async () => {
    const { dir } = await nodeDir();
    const a = await generateKeyPair();
    const b = await generateKeyPair();
    await writePeers(dir, { peers: [{ name: 'a', id: b.id, publicKey: a.publicJwk }] });
    const line = expectOneLineError(await startExpectingExit(dir));
    expect(line).toContain(`${join(dir, 'peers.json')}: $.peers[0].id:`);
    expect(line).toMatch(/thumbprint/);
  });

  it('a peers file listing this node itself', async () => {
    const { dir } = await nodeDir();
    const me = JSON.parse((await runCli(['id', '--data', dir, '--json'])).stdout) as Record<string, unknown>;
    await writePeers(dir, { peers: [me] });
    expect(expectOneLineError(await startExpectingExit(dir))).toContain('$.peers[0].id');
  });

  it('a second start on a data dir in use exits 2 saying so; the first node keeps serving', async () => {
    const { dir } = await nodeDir();
    const first = await spawnNode(dir);
    const daemonFile = await readFile(join(dir, 'daemon.json'), 'utf8');

    const line = expectOneLineError(await startExpectingExit(dir));
    expect(line).toMatch(/in use by another Tessera process/);
    expect(line).toContain(dir);

    const health = await get(first.api, '/healthz');
    expect(health).toEqual({ status: 200, body: { ok: true } });
    const status = await get(first.api, '/v1/status', bearer(await token(dir, 'read:**')));
    expect(status.status).toBe(200);
    // The refused process left the running node's daemon.json alone.
    expect(await readFile(join(dir, 'daemon.json'), 'utf8')).toBe(daemonFile);
    expect(await first.stop()).toBe(0);
  });
});

describe('tessera start: initialising', () => {
  it('initialises a folder without an identity, says so in the log, and serves', async () => {
    // Only a tessera.json (for port 0): identity.json is what decides.
    const dir = join(await tempDir(), 'fresh');
    await mkdir(dir);
    await writeFile(join(dir, 'tessera.json'), JSON.stringify({ name: 'fresh', listen: '127.0.0.1:0', api: '127.0.0.1:0' }));
    const node = await spawnNode(dir);
    const init = node.lines.find((l) => l.msg === 'initialised a new data directory');
    expect(init).toMatchObject({ id: node.id });
    expect(node.lines.indexOf(init!)).toBeLessThan(node.lines.findIndex((l) => l.msg === 'listening'));
    expect((await readKeyFile(join(dir, 'identity.json'))).id).toBe(node.id);
    expect((await stat(join(dir, 'identity.json'))).mode & 0o777).toBe(0o600);
    expect(await get(node.api, '/healthz')).toEqual({ status: 200, body: { ok: true } });
  });

  it('initialises an existing empty folder, and the log says so', async () => {
    // An empty folder means the default config, whose ports are fixed: watch
    // only for the initialisation line, which comes before anything binds.
    const dir = join(await tempDir(), 'empty');
    await mkdir(dir);
    const child = spawn(process.execPath, [CLI, 'start', '--data', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    onTestFinished(async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    });
    const line = await new Promise<Record<string, unknown>>((resolve, reject) => {
      createInterface({ input: child.stdout }).on('line', (text) => {
        const l = JSON.parse(text) as Record<string, unknown>;
        if (l.msg === 'initialised a new data directory') resolve(l);
      });
      void exited.then(() => reject(new Error('exited before saying it initialised the folder')));
    });
    child.kill('SIGKILL');
    expect(line.dataDir).toBe(dir);
    expect((await readKeyFile(join(dir, 'identity.json'))).id).toBe(line.id);
    expect(existsSync(join(dir, 'tessera.json'))).toBe(true);
  });
});

describe('tessera status and the local API', () => {
  it('status finds a node started on port 0 through daemon.json, and says when none runs', async () => {
    const { dir, id } = await nodeDir({ name: 'gamma' });
    const node = await spawnNode(dir);
    expect(JSON.parse(await readFile(join(dir, 'daemon.json'), 'utf8'))).toEqual({ pid: node.child.pid, peer: node.peer, api: node.api });

    const text = await runCli(['status', '--data', dir]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toContain(`gamma (${id})`);
    const json = await runCli(['status', '--data', dir, '--json']);
    expect(JSON.parse(json.stdout)).toMatchObject({ id, name: 'gamma', peers: [], docs: 0, pending: 0, grant: null, alarms: [] });

    expect(await node.stop()).toBe(0);
    expect(expectOneLineError(await runCli(['status', '--data', dir]))).toMatch(/no Tessera node is running/);
  });

  it('/v1/status answers 401 without a token, and for a bad, foreign or expired token', async () => {
    const { dir } = await nodeDir();
    const node = await spawnNode(dir);
    const self = await readKeyFile(join(dir, 'identity.json'));
    const stranger = await generateKeyPair();
    // Expired by an hour against the node's own clock: far beyond any tolerance.
    const expired = await issueApiToken(self, { scopes: ['read:**'], ttlMs: 3_600_000, now: Date.now() - 2 * 3_600_000 });
    const foreign = await issueApiToken(stranger, { scopes: ['read:**'], ttlMs: 3_600_000 });
    const cases: [string, Record<string, string>][] = [
      ['no token', {}],
      ['empty bearer', { authorization: 'Bearer ' }],
      ['not a bearer', { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` }],
      ['garbage', bearer('not.a.token')],
      ['foreign key', bearer(foreign)],
      ['expired', bearer(expired)],
    ];
    for (const [label, headers] of cases) {
      const res = await get(node.api, '/v1/status', headers);
      expect(res.status, label).toBe(401);
      expect(res.body, label).toEqual({ error: { code: 'unauthorized', message: expect.any(String) } });
    }
    expect((await get(node.api, '/v1/status', bearer(await token(dir, 'read:**')))).status).toBe(200);
  });

  it('a Host header that is neither the API nor loopback gets 421, on /healthz too', async () => {
    const { dir } = await nodeDir();
    const node = await spawnNode(dir);
    const port = node.api.split(':').pop()!;
    const evil = await get(node.api, '/healthz', { host: 'evil.example' });
    expect(evil.status).toBe(421);
    expect(evil.body).toEqual({ error: { code: 'misdirected', message: expect.any(String) } });
    expect((await get(node.api, '/healthz', { host: `evil.example:${port}` })).status).toBe(421);
    expect((await get(node.api, '/v1/status', { host: 'evil.example', ...bearer(await token(dir, 'read:**')) })).status).toBe(421);
    expect((await get(node.api, '/healthz', { host: `localhost:${port}` })).status).toBe(200);
    expect((await get(node.api, '/healthz', { host: `127.0.0.1:${port}` })).status).toBe(200);
  });

  it('peers add / peers remove edit the peers file and the running daemon picks them up', async () => {
    const a = await nodeDir({ name: 'a' });
    const b = await nodeDir({ name: 'bravo' });
    const node = await spawnNode(a.dir);
    const jwt = await token(a.dir, 'read:**');
    const peersOf = async () => ((await get(node.api, '/v1/status', bearer(jwt))).body as { peers: { name: string; id: string; url: string | null; state: string }[] }).peers;

    const entryFile = join(await tempDir(), 'bravo.json');
    await writeFile(entryFile, (await runCli(['id', '--data', b.dir, '--json'])).stdout);
    const added = await runCli(['peers', 'add', '--data', a.dir, '--entry', entryFile, '--read', 'notes/**']);
    expect(added.code, added.stderr).toBe(0);
    expect(added.stdout.trim()).toBe(b.id);

    const file = JSON.parse(await readFile(join(a.dir, 'peers.json'), 'utf8')) as { peers: Record<string, unknown>[] };
    expect(file.peers).toEqual([{ id: b.id, publicKey: expect.objectContaining({ kty: 'OKP' }), name: 'bravo', read: ['notes/**'], write: [] }]);
    expect(parsePeers('peers.json', file, a.id as NodeId).peers).toHaveLength(1);

    const listed = await until(async () => (await peersOf()).find((p) => p.id === b.id), 'the added peer in /v1/status');
    expect(listed).toEqual({ name: 'bravo', id: b.id, url: null, state: 'disconnected', since: null });

    // Adding it twice is refused, and the file is unchanged.
    const before = await readFile(join(a.dir, 'peers.json'), 'utf8');
    expect(expectOneLineError(await runCli(['peers', 'add', '--data', a.dir, '--entry', entryFile]))).toMatch(/already listed/);
    expect(await readFile(join(a.dir, 'peers.json'), 'utf8')).toBe(before);

    const removed = await runCli(['peers', 'remove', '--data', a.dir, 'bravo']);
    expect(removed.code, removed.stderr).toBe(0);
    expect(removed.stdout.trim()).toBe(b.id);
    await until(async () => ((await peersOf()).length === 0 ? true : undefined), 'the removed peer to leave /v1/status');
    expect(expectOneLineError(await runCli(['peers', 'remove', '--data', a.dir, 'bravo']))).toMatch(/no peer/);
  });

  it('peers add refuses an entry the peers file would not accept, naming the path', async () => {
    const a = await nodeDir({ name: 'a' });
    const self = join(await tempDir(), 'self.json');
    await writeFile(self, (await runCli(['id', '--data', a.dir, '--json'])).stdout);
    expect(expectOneLineError(await runCli(['peers', 'add', '--data', a.dir, '--entry', self]))).toContain(`${join(a.dir, 'peers.json')}: $.peers[0].id:`);

    const b = await nodeDir({ name: 'b' });
    const other = join(await tempDir(), 'b.json');
    await writeFile(other, (await runCli(['id', '--data', b.dir, '--json'])).stdout);
    expect(expectOneLineError(await runCli(['peers', 'add', '--data', a.dir, '--entry', other, '--url', 'http://b.example']))).toContain('$.peers[0].url');
    expect(expectOneLineError(await runCli(['peers', 'add', '--data', a.dir, '--entry', other, '--read', 'a**']))).toContain('$.peers[0].read[0]');
    expectOneLineError(await runCli(['peers', 'add', '--data', a.dir, '--entry', join(a.dir, 'missing.json')]));
    expect(existsSync(join(a.dir, 'peers.json'))).toBe(false);
  });

  it('SIGHUP reloads a peers file whose folder did not exist at start (so could not be watched)', async () => {
    const { dir } = await nodeDir({ config: { peersFile: 'later/peers.json' } });
    const node = await spawnNode(dir);
    expect(node.lines.some((l) => l.level === 50 && l.dir === join(dir, 'later'))).toBe(true);
    const b = await generateKeyPair();
    await writePeers(join(dir, 'later'), { peers: [{ name: 'b', id: b.id, publicKey: b.publicJwk }] });
    node.child.kill('SIGHUP');
    expect(await node.waitFor((l) => l.msg === 'peers file reloaded')).toMatchObject({ added: 1 });
    const status = await get(node.api, '/v1/status', bearer(await token(dir, 'read:**')));
    expect((status.body as { peers: { id: string }[] }).peers.map((p) => p.id)).toEqual([b.id]);
    expect(await node.stop()).toBe(0);
  });

  it("the private key never appears in the daemon's output", async () => {
    const { dir } = await nodeDir();
    const d = await privateD(dir);
    const node = await spawnNode(dir, { TESSERA_LOG_LEVEL: 'trace' });
    // Exercise logging paths: refused requests, a reload, an invalid peers file, a clean stop.
    await get(node.api, '/v1/status', bearer('bogus'));
    await get(node.api, '/healthz', { host: 'evil.example' });
    const b = await generateKeyPair();
    await writePeers(dir, { peers: [{ name: 'b', id: b.id, publicKey: b.publicJwk }] });
    await node.waitFor((l) => l.msg === 'peers file reloaded');
    const identity = JSON.parse(await readFile(join(dir, 'identity.json'), 'utf8')) as { privateKey: unknown };
    await writePeers(dir, { peers: [{ name: 'b', id: b.id, publicKey: identity.privateKey }] });
    await node.waitFor((l) => l.path === '$.peers[0].publicKey');
    expect(await node.stop()).toBe(0);
    const out = node.lines.map((l) => JSON.stringify(l)).join('\n');
    expect(out).toContain('"msg":"stopped"');
    expect(out).not.toContain(d);
  });
});
