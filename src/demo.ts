/**
 * `npm run demo`: three Tessera nodes in a chain (A – B – C) on temp folders
 * and loopback ports. A writes; C, which never talks to A, gets the write and
 * shows that A wrote it. Everything is cleaned up at the end.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as Y from 'yjs';
import { TesseraClient } from './client/index.js';

const cli = join(import.meta.dirname, 'cli.js');
const run = promisify(execFile);
const tessera = async (...args: string[]) => (await run(process.execPath, [cli, ...args])).stdout.trim();
const say = (text: string) => process.stdout.write(text + '\n');

async function started(dir: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [cli, 'start', '--data', dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => String(d).includes('"msg":"listening"') && resolve());
    child.once('exit', (code) => reject(new Error(`node in ${dir} exited with ${code}`)));
  });
  return child;
}

async function daemonOf(dir: string): Promise<{ peer: string; api: string }> {
  return JSON.parse(await readFile(join(dir, 'daemon.json'), 'utf8')) as { peer: string; api: string };
}

async function until<T>(what: string, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const v = await check().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function main(): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'tessera-demo-'));
  const children: ChildProcess[] = [];
  try {
    const dirs = { a: join(root, 'a'), b: join(root, 'b'), c: join(root, 'c') };
    for (const [name, dir] of Object.entries(dirs)) await tessera('init', '--data', dir, '--name', name, '--listen', '127.0.0.1:0', '--api', '127.0.0.1:0');
    const entry = async (dir: string) => {
      const file = join(dir, 'entry.json');
      await writeFile(file, await tessera('id', '--data', dir, '--json'));
      return file;
    };
    say('1. three nodes: a, b, c. b sits in the middle; a and c never meet.');
    children.push(await started(dirs.b));
    const b = await daemonOf(dirs.b);
    await tessera('peers', 'add', '--data', dirs.b, '--entry', await entry(dirs.a), '--read', 'notes/**', '--write', 'notes/**');
    await tessera('peers', 'add', '--data', dirs.b, '--entry', await entry(dirs.c), '--read', 'notes/**');
    for (const dir of [dirs.a, dirs.c]) {
      await tessera('peers', 'add', '--data', dir, '--entry', await entry(dirs.b), '--url', `ws://${b.peer}`, '--read', 'notes/**', '--write', 'notes/**');
    }
    // c trusts what a writes even though it only ever hears it through b.
    await tessera('peers', 'add', '--data', dirs.c, '--entry', await entry(dirs.a), '--write', 'notes/**');
    children.push(await started(dirs.a), await started(dirs.c));
    const client = async (dir: string, scopes: string[]) => new TesseraClient({ url: `http://${(await daemonOf(dir)).api}`, token: await tessera('token', '--data', dir, ...scopes.flatMap((s) => ['--scope', s]), '--ttl', '10m') });
    const a = await client(dirs.a, ['read:notes/**', 'write:notes/**']);
    const c = await client(dirs.c, ['read:**']);
    await until('a and c to connect to b', async () => ((await a.status()).peers[0]?.state === 'connected' && (await c.status()).peers.some((p) => p.state === 'connected') ? true : undefined));

    say('2. an app on a writes "notes/welcome" (a Yjs update, POSTed to a\'s local API).');
    const app = new Y.Doc();
    let update: Uint8Array | undefined;
    app.on('update', (u: Uint8Array) => (update = u));
    app.transact(() => {
      app.getText('body').insert(0, 'Hello from a, signed by a, relayed by b.');
      app.getMap('meta').set('author', 'a');
    });
    await a.write('notes/welcome', update!);

    const doc = await until('the note to reach c', async () => {
      const d = await c.get('notes/welcome');
      return typeof d.body === 'string' ? d : undefined;
    });
    say('3. c has it, two hops away:');
    say('   ' + JSON.stringify(doc));
    say('4. and c can show who wrote every byte (the envelope is a\'s, verbatim):');
    const ids = { [await tessera('id', '--data', dirs.a)]: 'a', [await tessera('id', '--data', dirs.b)]: 'b' };
    for (const au of await c.authors('notes/welcome')) say(`   ${au.name ?? ids[au.origin] ?? au.origin}: ${au.envelopes} envelope(s), Yjs clients ${JSON.stringify(au.clients)}`);
    const report = await c.verify();
    say(`5. c re-checks every stored signature: ${report.ok ? 'ok' : 'FAILED'} (${report.envelopes} envelopes)`);
  } finally {
    for (const child of children) child.kill('SIGTERM');
    await Promise.all(children.map((child) => new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)))));
    await rm(root, { recursive: true, force: true });
    say('done; the temp folders are gone.');
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
