/**
 * The peers and grants files as admins and their tools really write them
 * (DESIGN.md §2, §8): saved through a symlink, swapped under a mounted
 * config, in a folder that is replaced, missing for a moment mid-save,
 * written with a BOM or a comment; `tessera peers` run twice at once, on a
 * broken file, through a symlink. Real daemons, real files, real sockets.
 */
import { describe, expect, it, onTestFinished } from 'vitest';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import { chmod, lstat, mkdir, readFile, readlink, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { generateKeyPair, importPublicJwk, type KeyPair } from '../../src/identity/keys.js';
import { FrameCipher } from '../../src/protocol/frames.js';
import { SUBPROTOCOL, b64u, deriveSessionKeys, encodeHello, signDiallerToken, transcript, verifyListenerToken, x25519Public } from '../../src/protocol/handshake.js';
import { encodeMessage } from '../../src/protocol/messages.js';
import type { NodeId } from '../../src/types.js';
import { rawEntry } from '../helpers/raw-peer.js';
import { peersAddCommand } from '../../src/commands/peers.js';
import { entryFor, linkPair, peerState, setPeers, status, testNode, type TestNode } from '../helpers/cluster.js';
import { nodeDir, runCli, spawnNode, tempDir, writePeers } from '../helpers/node.js';
import { waitUntil } from '../helpers/wait.js';

type Line = Record<string, unknown>;

/** A bound for an event to happen: a failure bound, never a success condition. */
const EVENT_MS = 8_000;

/** Resolves with the first log line of `node` from index `from` on that matches. */
function logLine(node: TestNode, pred: (l: Line) => boolean, what: string, from = 0): Promise<Line> {
  return waitUntil(() => node.lines.slice(from).find(pred), { what, timeoutMs: EVENT_MS });
}

function bare(pair: KeyPair, name: string, extra: Record<string, unknown> = {}) {
  return { name, id: pair.id, publicKey: pair.publicJwk, read: ['notes/**'], write: ['notes/**'], ...extra };
}

async function listed(node: TestNode): Promise<string[]> {
  return (await status(node)).peers.map((p) => p.id);
}

/** Waits until the node's /v1/status lists exactly these ids (in any order). */
function untilListed(node: TestNode, ids: string[], what: string): Promise<true> {
  return waitUntil(async () => JSON.stringify((await listed(node)).sort()) === JSON.stringify([...ids].sort()) || undefined, { what, timeoutMs: EVENT_MS }) as Promise<true>;
}

async function writeByRename(path: string, body: unknown): Promise<void> {
  const tmp = `${path}.${Math.random().toString(36).slice(2)}.tmp`;
  await writeFile(tmp, typeof body === 'string' ? body : JSON.stringify(body, null, 2));
  await rename(tmp, path);
}

function oneLineError(r: { code: number; stdout: string; stderr: string }): string {
  expect(r.code, r.stderr).toBe(2);
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines).toHaveLength(1);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  return lines[0]!;
}

describe('§2 a peers file that is a symlink', () => {
  it('into another folder: an edit of its target there is applied live, without SIGHUP', async () => {
    const a = await testNode('a');
    const conf = await tempDir();
    const b = await generateKeyPair();
    const c = await generateKeyPair();
    await writeByRename(join(conf, 'peers.json'), { peers: [bare(b, 'b')] });
    await symlink(join(conf, 'peers.json'), join(a.dir, 'peers.json'));
    await untilListed(a, [b.id], 'the symlinked file in force');

    const from = a.lines.length;
    await writeByRename(join(conf, 'peers.json'), { peers: [bare(b, 'b'), bare(c, 'c')] });
    await logLine(a, (l) => l.msg === 'peers file reloaded', 'the edit of the target picked up', from);
    await untilListed(a, [b.id, c.id], 'the added peer listed');
  });

  it('swapped the way a mounted config is updated (a "..data" symlink renamed over): applied live', async () => {
    const a = await testNode('a');
    const b = await generateKeyPair();
    const c = await generateKeyPair();
    await mkdir(join(a.dir, '..v1'));
    await writeFile(join(a.dir, '..v1', 'peers.json'), JSON.stringify({ peers: [bare(b, 'b')] }));
    await symlink('..v1', join(a.dir, '..data'));
    await symlink(join('..data', 'peers.json'), join(a.dir, 'peers.json'));
    await untilListed(a, [b.id], 'the mounted file in force');

    await mkdir(join(a.dir, '..v2'));
    await writeFile(join(a.dir, '..v2', 'peers.json'), JSON.stringify({ peers: [bare(c, 'c')] }));
    await symlink('..v2', join(a.dir, '..data_tmp'));
    await rename(join(a.dir, '..data_tmp'), join(a.dir, '..data'));
    await untilListed(a, [c.id], 'the swapped-in file in force');
  });
});

describe('§2 the folder of the peers file removed and created again', () => {
  it('a peers file written in the new folder is applied live, without SIGHUP', async () => {
    const { dir } = await nodeDir({ name: 'a', config: { peersFile: 'conf/peers.json' } });
    await mkdir(join(dir, 'conf'));
    const a = await testNode('a', {}, dir);
    const b = await generateKeyPair();
    await rm(join(dir, 'conf'), { recursive: true });
    await logLine(a, (l) => l.msg === 'config folder was removed or replaced; watching it again once it exists', 'the lost folder noticed');
    await mkdir(join(dir, 'conf'));
    await writePeers(join(dir, 'conf'), { peers: [bare(b, 'b')] });
    await untilListed(a, [b.id], 'the peer from the new folder listed');
  });
});

describe('§2 an editor that saves by moving the old file aside first', () => {
  it('the file missing for a moment disturbs no session; missing for good, every peer is removed', async () => {
    const a = await testNode('a');
    const b = await testNode('b');
    await linkPair(a, b);
    const since = (await status(a)).peers[0]!.since;
    const from = a.lines.length;

    // Backup and swap: the old file moves aside, the new one arrives a little later.
    await rename(join(a.dir, 'peers.json'), join(a.dir, 'peers.json~'));
    await logLine(a, (l) => l.msg === 'config file missing; taken as empty if it is still missing after the grace period', 'the missing file noticed', from);
    await writePeers(a.dir, { peers: [entryFor(b, { read: ['notes/**'] })] });
    await logLine(a, (l) => l.msg === 'peers file reloaded' && l.changed === 1, 'the new file applied', from);
    expect(a.lines.slice(from).filter((l) => l.msg === 'session closed' || String(l.msg).includes('removed from the peers file'))).toEqual([]);
    expect(await peerState(a, b)).toBe('connected');
    expect((await status(a)).peers[0]!.since).toBe(since);

    // Deleted for good: "a missing peers file means an empty one".
    await rm(join(a.dir, 'peers.json'));
    await logLine(a, (l) => l.msg === 'peers file reloaded' && l.removed === 1, 'the deletion applied after the grace period', from);
    await waitUntil(async () => (await peerState(b, a)) !== 'connected', { what: 'the session closed', timeoutMs: EVENT_MS });
    expect(await listed(a)).toEqual([]);
  });

  it('truncate-then-write: the empty file in between is refused, the last good one stays, the finished write applies', async () => {
    const a = await testNode('a');
    const b = await generateKeyPair();
    const c = await generateKeyPair();
    await setPeers(a, [bare(b, 'b')]);
    const from = a.lines.length;
    await writeFile(join(a.dir, 'peers.json'), '');
    const refused = await logLine(a, (l) => l.level === 50 && l.file === join(a.dir, 'peers.json'), 'the empty file refused', from);
    expect(refused.path).toBe('$');
    expect(await listed(a)).toEqual([b.id]);
    await writeFile(join(a.dir, 'peers.json'), JSON.stringify({ peers: [bare(b, 'b'), bare(c, 'c')] }));
    await untilListed(a, [b.id, c.id], 'the finished write applied');
  });
});

describe('§2 validation on reload: the exact problem is logged, the last good file stays', () => {
  async function refusedReload(body: string | object): Promise<{ line: Line; a: TestNode; good: string }> {
    const a = await testNode('a');
    const good = await generateKeyPair();
    await setPeers(a, [bare(good, 'good')]);
    const from = a.lines.length;
    await writeByRename(join(a.dir, 'peers.json'), body);
    await a.daemon.reload();
    const line = await logLine(a, (l) => l.level === 50 && l.file === join(a.dir, 'peers.json'), 'the refusal logged', from);
    expect(await listed(a)).toEqual([good.id]);
    return { line, a, good: good.id };
  }

  it('a url with a user name and password: refused at its path, the password not echoed', async () => {
    const b = await generateKeyPair();
    const { line } = await refusedReload({ peers: [bare(b, 'b', { url: 'ws://admin:s3cret-pw@berlin.example:7400' })] });
    expect(line.path).toBe('$.peers[0].url');
    expect(String(line.msg)).toMatch(/user name or password/);
    expect(JSON.stringify(line)).not.toContain('s3cret-pw');
  });

  it('a url with a #fragment (which no WebSocket can dial): refused at its path', async () => {
    const b = await generateKeyPair();
    const { line } = await refusedReload({ peers: [bare(b, 'b', { url: 'wss://berlin.example:7400/#main' })] });
    expect(line.path).toBe('$.peers[0].url');
    expect(String(line.msg)).toMatch(/fragment/);
  });

  it('a public key spelt non-canonically (a second id for the same key): refused at its path', async () => {
    const b = await generateKeyPair();
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const x = b.publicJwk.x;
    const stray = x.slice(0, -1) + alphabet[alphabet.indexOf(x.at(-1)!) + 1]!;
    expect(Buffer.from(stray, 'base64url').equals(Buffer.from(x, 'base64url'))).toBe(true);
    const { thumbprint } = await import('../../src/identity/keys.js');
    const { line } = await refusedReload({ peers: [{ name: 'b2', id: thumbprint({ x: stray }), publicKey: { kty: 'OKP', crv: 'Ed25519', x: stray } }] });
    expect(line.path).toBe('$.peers[0].publicKey');
    expect(String(line.msg)).toMatch(/canonical/);
  });

  it('a comment: refused, saying on which line and column', async () => {
    const { line } = await refusedReload('{\n  "peers": [],\n  // berlin is next\n  "authorities": []\n}\n');
    expect(line.path).toBe('$');
    expect(String(line.msg)).toMatch(/not valid JSON at line 3, column 3/);
  });

  it('a byte order mark (as some editors save UTF-8) is not an error: the file applies', async () => {
    const a = await testNode('a');
    const b = await generateKeyPair();
    await writeByRename(join(a.dir, 'peers.json'), '\uFEFF' + JSON.stringify({ peers: [bare(b, 'b')] }));
    await a.daemon.reload();
    await untilListed(a, [b.id], 'the file with a BOM applied');
  });
});

describe('§8 tessera.json with a byte order mark', () => {
  it('tessera start accepts it', async () => {
    const { dir } = await nodeDir({ name: 'bom' });
    await writeFile(join(dir, 'tessera.json'), '\uFEFF' + JSON.stringify({ name: 'bom', listen: '127.0.0.1:0', api: '127.0.0.1:0' }));
    const node = await spawnNode(dir);
    expect(await node.stop()).toBe(0);
  });
});

describe('§2 what a reload changes', () => {
  it("a peer's changed url is dialled", async () => {
    const a = await testNode('a');
    const b = await testNode('b');
    await setPeers(b, [entryFor(a, { dial: false })]);
    // First a url where nothing listens any more.
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as { port: number }).port;
    await new Promise<void>((r) => closed.close(() => r()));
    await setPeers(a, [{ ...entryFor(b), url: `ws://127.0.0.1:${port}` }]);
    await waitUntil(async () => (await peerState(a, b)) === 'disconnected' || undefined, { what: 'the dead url tried' });
    await setPeers(a, [entryFor(b)]);
    await waitUntil(async () => (await peerState(a, b)) === 'connected' || undefined, { what: 'the new url dialled', timeoutMs: EVENT_MS });
  });
});

/**
 * Dials `node` as `self` with the real handshake and stops once the node has
 * answered (message 2); `finish()` sends message 3 and the grants frame.
 */
async function pausedDial(node: TestNode, self: KeyPair) {
  const ws = new WebSocket(node.url, SUBPROTOCOL, { perMessageDeflate: false });
  onTestFinished(() => ws.terminate());
  ws.on('error', () => undefined);
  const frames: Buffer[] = [];
  ws.on('message', (d) => frames.push(d as Buffer));
  const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)));
  await new Promise((r) => ws.once('open', r));
  const eph = generateKeyPairSync('x25519');
  const nonce = b64u(randomBytes(32));
  const m1 = encodeHello({ from: self.id, to: node.id as NodeId, epk: x25519Public(eph.publicKey), nonce });
  ws.send(Buffer.from(m1).toString('utf8'));
  const th1 = transcript(undefined, m1);
  const m2 = await waitUntil(() => frames.shift(), { what: 'message 2' });
  const v = await verifyListenerToken(m2.toString('utf8'), importPublicJwk(node.publicKey), { self: self.id, now: Date.now(), clockToleranceS: 30, listener: node.id as NodeId, dialerNonce: nonce, th1 });
  const th2 = transcript(th1, m2);
  const m3 = await signDiallerToken({ signer: self, publicJwk: self.publicJwk, audience: node.id as NodeId, iat: Math.floor(Date.now() / 1000), jti: b64u(randomBytes(16)), sessionTtlS: 3600, listenerNonce: v.payload.snonce!, th2 });
  const keys = deriveSessionKeys(eph.privateKey, v.payload.epk!, transcript(th2, Buffer.from(m3)));
  const seal = new FrameCipher(keys.d2l);
  return {
    closed,
    finish() {
      ws.send(m3);
      ws.send(seal.seal(encodeMessage({ type: 'grants', grants: [], revocations: [] })), { binary: true });
    },
  };
}

describe('§2 a reload racing with a handshake', () => {
  it('a peer removed while its handshake is half done is closed 4010 when it completes, never connected', async () => {
    const a = await testNode('a');
    const r = await generateKeyPair();
    await setPeers(a, [rawEntry('r', r)]);
    const dial = await pausedDial(a, r);
    await setPeers(a, []);
    dial.finish();
    expect(await Promise.race([dial.closed, new Promise((r) => setTimeout(r, EVENT_MS, 'still open'))])).toBe(4010);
    expect(a.lines.some((l) => l.msg === 'session established' && l.peer === r.id)).toBe(false);
  });
});

describe('§8 tessera peers add/remove edit the file safely', () => {
  it('several adds at once all land (none writes over another)', async () => {
    const { dir } = await nodeDir({ name: 'a' });
    const entries = await tempDir();
    const pairs = await Promise.all(Array.from({ length: 6 }, () => generateKeyPair()));
    const files = await Promise.all(
      pairs.map(async (p, i) => {
        const f = join(entries, `${i}.json`);
        await writeFile(f, JSON.stringify({ name: `n${i}`, id: p.id, publicKey: p.publicJwk }));
        return f;
      }),
    );
    await Promise.all(files.map((entry) => peersAddCommand(dir, { entry, read: ['notes/**'], write: [] })));
    const file = JSON.parse(await readFile(join(dir, 'peers.json'), 'utf8')) as { peers: { id: string }[] };
    expect(file.peers.map((p) => p.id).sort()).toEqual(pairs.map((p) => p.id).sort());
    await expect(stat(join(dir, 'peers.json.lock'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('on a peers file whose shape is broken: exit 2, one line naming the file and the JSON path (no stack)', async () => {
    const { dir } = await nodeDir({ name: 'a' });
    const b = await generateKeyPair();
    const entry = join(await tempDir(), 'b.json');
    await writeFile(entry, JSON.stringify({ id: b.id, publicKey: b.publicJwk }));
    const peersFile = join(dir, 'peers.json');

    await writeFile(peersFile, JSON.stringify({ peers: [null] }));
    expect(oneLineError(await runCli(['peers', 'add', '--data', dir, '--entry', entry]))).toContain(`${peersFile}: $.peers[0]:`);
    await writeFile(peersFile, 'null');
    expect(oneLineError(await runCli(['peers', 'remove', '--data', dir, 'b']))).toContain(`${peersFile}: $:`);
    await writeFile(peersFile, JSON.stringify({ peers: {} }));
    expect(oneLineError(await runCli(['peers', 'add', '--data', dir, '--entry', entry]))).toContain(`${peersFile}: $.peers:`);
    expect(await readFile(peersFile, 'utf8')).toBe(JSON.stringify({ peers: {} }));
  });

  it('through a symlinked peers file: the link stays a link, the target keeps its mode, the daemon applies it', async () => {
    const { dir } = await nodeDir({ name: 'a' });
    const conf = await tempDir();
    const target = join(conf, 'peers.json');
    await writeFile(target, JSON.stringify({ peers: [] }));
    await chmod(target, 0o640);
    await symlink(target, join(dir, 'peers.json'));
    const node = await spawnNode(dir);

    const b = await generateKeyPair();
    const entry = join(await tempDir(), 'b.json');
    await writeFile(entry, JSON.stringify({ name: 'b', id: b.id, publicKey: b.publicJwk }));
    const r = await runCli(['peers', 'add', '--data', dir, '--entry', entry, '--read', 'notes/**']);
    expect(r.code, r.stderr).toBe(0);

    expect((await lstat(join(dir, 'peers.json'))).isSymbolicLink()).toBe(true);
    expect(await readlink(join(dir, 'peers.json'))).toBe(target);
    expect((await stat(target)).mode & 0o777).toBe(0o640);
    expect((JSON.parse(await readFile(target, 'utf8')) as { peers: { id: string }[] }).peers.map((p) => p.id)).toEqual([b.id]);
    expect(await node.waitFor((l) => l.msg === 'peers file reloaded', EVENT_MS)).toMatchObject({ added: 1 });
    expect(await node.stop()).toBe(0);
  });
});

describe('§2 tessera.json edited while the node runs', () => {
  it('is not applied, and the node says once which keys need a restart, or where the file became invalid', async () => {
    const node = await testNode('edited');
    const file = join(node.dir, 'tessera.json');
    const original = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    const from = node.lines.length;
    await writeByRename(file, { ...original, maxDocsInMemory: 7, heartbeatInterval: '3s' });
    const changed = await logLine(node, (l) => String(l.msg).startsWith('tessera.json changed'), 'the restart warning', from);
    expect(changed.keys).toEqual(['maxDocsInMemory', 'heartbeatInterval']);
    expect(node.daemon.config.maxDocsInMemory).not.toBe(7);

    await writeByRename(file, '{ "name": "edited", "maxDocsInMemory": 0 }');
    const invalid = await logLine(node, (l) => String(l.msg).startsWith('invalid config') && l.path === '$.maxDocsInMemory', 'the invalid tessera.json logged', from);
    expect(invalid.file).toBe(file);

    // Back as it was: nothing more to say, and nothing said twice.
    await writeByRename(file, original);
    await node.daemon.reload();
    expect(node.lines.slice(from).filter((l) => String(l.msg).startsWith('tessera.json changed'))).toHaveLength(1);
  });
});
