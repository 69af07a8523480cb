import { describe, expect, it, onTestFinished } from 'vitest';
import { rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigWatcher } from '../../../src/config/watcher.js';
import { EMPTY_PEERS, loadPeers, type PeersConfig, type PeersDiff } from '../../../src/config/peers.js';
import { EMPTY_GRANTS, type GrantsFile } from '../../../src/config/grants-file.js';
import { generateKeyPair, type KeyPair } from '../../../src/identity/keys.js';
import { memoryLogger, tempDir, writePeers } from '../../helpers/node.js';

const self = await generateKeyPair();
const alice = await generateKeyPair();
const bob = await generateKeyPair();

/** Generous bound for a file-system event; a failure bound, never a success condition. */
const EVENT_TIMEOUT_MS = 10_000;

function entry(pair: KeyPair, name: string, extra: Record<string, unknown> = {}) {
  return { name, id: pair.id, publicKey: pair.publicJwk, read: ['notes/**'], write: ['notes/**'], ...extra };
}

type Line = Record<string, unknown>;

/**
 * memoryLogger, plus a promise per awaited line: resolved when a matching line
 * is written (the logger writes synchronously), rejected only after a generous bound.
 */
function watchedLogger() {
  const { log, lines } = memoryLogger();
  const waiters: { pred: (l: Line) => boolean; resolve: (l: Line) => void }[] = [];
  const push = lines.push.bind(lines);
  lines.push = (...items: Line[]) => {
    const n = push(...items);
    for (const item of items) {
      for (const w of [...waiters]) {
        if (w.pred(item)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(item);
        }
      }
    }
    return n;
  };
  const next = (pred: (l: Line) => boolean, what: string) =>
    new Promise<Line>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no log line: ${what}; lines: ${JSON.stringify(lines)}`)), EVENT_TIMEOUT_MS);
      waiters.push({ pred, resolve: (l) => (clearTimeout(timer), resolve(l)) });
    });
  return { log, lines, next };
}

/** A watcher on a fresh folder, stopped when the test ends. */
async function setup(opts: { initial?: unknown; start?: boolean } = {}) {
  const dir = await tempDir();
  const peersFile = join(dir, 'peers.json');
  const grantsFile = join(dir, 'grants.json');
  if (opts.initial !== undefined) await writePeers(dir, opts.initial);
  const peers = await loadPeers(peersFile, self.id);
  const logger = watchedLogger();
  const watcher = new ConfigWatcher({ peersFile, grantsFile, selfId: self.id, peers, grants: EMPTY_GRANTS, log: logger.log, debounceMs: 20 });
  if (opts.start ?? true) watcher.start();
  onTestFinished(() => watcher.stop());
  return { dir, peersFile, grantsFile, watcher, ...logger };
}

/** The next 'peers' event whose config satisfies `pred`, or a clear failure after a generous bound. */
function nextPeers(watcher: ConfigWatcher, pred: (c: PeersConfig) => boolean = () => true): Promise<{ config: PeersConfig; diff: PeersDiff }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      watcher.off('peers', on);
      reject(new Error('no matching peers event'));
    }, EVENT_TIMEOUT_MS);
    function on(config: PeersConfig, diff: PeersDiff) {
      if (!pred(config)) return;
      clearTimeout(timer);
      watcher.off('peers', on);
      resolve({ config, diff });
    }
    watcher.on('peers', on);
  });
}

function nextGrants(watcher: ConfigWatcher): Promise<GrantsFile> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no grants event')), EVENT_TIMEOUT_MS);
    watcher.once('grants', (g) => (clearTimeout(timer), resolve(g)));
  });
}

describe('ConfigWatcher', () => {
  it('replacing the peers file by rename emits a "peers" event with the diff', async () => {
    const { dir, watcher } = await setup({ initial: { peers: [entry(alice, 'alice')] } });
    expect(watcher.peers.peers.map((p) => p.id)).toEqual([alice.id]);

    const added = nextPeers(watcher);
    await writePeers(dir, { peers: [entry(alice, 'alice'), entry(bob, 'bob')] });
    const a = await added;
    expect(a.diff.added.map((p) => p.id)).toEqual([bob.id]);
    expect(a.diff).toMatchObject({ removed: [], rekeyed: [], changed: [], authoritiesChanged: false });
    expect(watcher.peers).toBe(a.config);

    const narrowed = nextPeers(watcher);
    await writePeers(dir, { peers: [entry(alice, 'alice', { write: [] }), entry(bob, 'bob')] });
    const n = await narrowed;
    expect(n.diff.changed.map((c) => [c.after.id, c.after.write])).toEqual([[alice.id, []]]);

    const removed = nextPeers(watcher);
    await writePeers(dir, { peers: [entry(bob, 'bob')] });
    const r = await removed;
    expect(r.diff.removed.map((p) => p.id)).toEqual([alice.id]);
    expect(r.diff.added).toEqual([]);
  });

  it('a re-keyed peer (same name, new key) arrives as rekeyed', async () => {
    const { dir, watcher } = await setup({ initial: { peers: [entry(alice, 'berlin')] } });
    const event = nextPeers(watcher);
    await writePeers(dir, { peers: [entry(bob, 'berlin')] });
    const { diff } = await event;
    expect(diff.rekeyed.map((r) => [r.before.id, r.after.id])).toEqual([[alice.id, bob.id]]);
    expect(diff).toMatchObject({ added: [], removed: [] });
  });

  it('writing a file in place (not by rename) is picked up too', async () => {
    const { peersFile, watcher } = await setup({ initial: { peers: [] } });
    const event = nextPeers(watcher);
    await writeFile(peersFile, JSON.stringify({ peers: [entry(alice, 'alice')] }));
    expect((await event).diff.added.map((p) => p.id)).toEqual([alice.id]);
  });

  it('a burst of replacements settles on the last file', async () => {
    const { dir, watcher } = await setup();
    const settled = nextPeers(watcher, (c) => c.peers.length === 1 && c.peers[0]!.name === 'third');
    await writePeers(dir, { peers: [entry(alice, 'first')] });
    await writePeers(dir, { peers: [entry(bob, 'second')] });
    await writePeers(dir, { peers: [entry(alice, 'third', { read: [] })] });
    const { config } = await settled;
    expect(config.peers[0]).toMatchObject({ id: alice.id, read: [] });
    expect(watcher.peers).toBe(config);
  });

  it('an invalid file keeps the last good config and logs the exact problem (file and JSON path)', async () => {
    const { dir, peersFile, watcher, next } = await setup({ initial: { peers: [entry(alice, 'alice')] } });
    const good = watcher.peers;
    let emitted = 0;
    watcher.on('peers', () => emitted++);

    const logged = next((l) => l.level === 50 && l.path === '$.peers[1].id', 'invalid peers file');
    // The second entry carries bob's key under alice's id, which is not its thumbprint.
    await writePeers(dir, { peers: [entry(alice, 'alice'), entry(bob, 'bob', { id: alice.id })] });
    const line = await logged;
    expect(line.file).toBe(peersFile);
    expect(line.component).toBe('config');
    expect(String(line.msg)).toContain(peersFile);
    expect(String(line.msg)).toContain('$.peers[1].id');
    expect(String(line.msg)).toMatch(/thumbprint/);
    expect(String(line.msg)).toMatch(/last good/);
    expect(watcher.peers).toBe(good);
    expect(emitted).toBe(0);

    // Invalid JSON: same, path "$".
    const logged2 = next((l) => l.level === 50 && l.path === '$' && String(l.msg).includes('not valid JSON'), 'invalid JSON');
    await writeFile(join(dir, '.tmp'), '{"peers": [');
    await rename(join(dir, '.tmp'), peersFile);
    await logged2;
    expect(watcher.peers).toBe(good);

    // The next valid file is diffed against the last good one, not against the invalid ones.
    const event = nextPeers(watcher);
    await writePeers(dir, { peers: [entry(alice, 'alice'), entry(bob, 'bob')] });
    const { diff } = await event;
    expect(diff.added.map((p) => p.id)).toEqual([bob.id]);
    expect(diff.removed).toEqual([]);
  });

  it('an invalid file on reload() is logged, and the last good config stays', async () => {
    const { peersFile, watcher, lines } = await setup({ initial: { peers: [entry(alice, 'alice')] }, start: false });
    const good = watcher.peers;
    await writeFile(peersFile, JSON.stringify({ peers: [entry(alice, 'alice', { url: 'http://alice.example' })] }));
    await watcher.reload();
    expect(watcher.peers).toBe(good);
    const line = lines.find((l) => l.path === '$.peers[0].url');
    expect(line).toMatchObject({ level: 50, file: peersFile });
    expect(String(line!.msg)).toMatch(/ws:\/\/ or wss:\/\//);
  });

  it('reload() (the SIGHUP path) picks up a change without any file watch', async () => {
    const { peersFile, watcher, lines } = await setup({ initial: { peers: [] }, start: false });
    const events: PeersDiff[] = [];
    watcher.on('peers', (_c, d) => events.push(d));

    await watcher.reload();
    expect(events).toEqual([]); // nothing changed, nothing emitted

    await writeFile(peersFile, JSON.stringify({ peers: [entry(alice, 'alice')] }));
    await watcher.reload();
    expect(events).toHaveLength(1);
    expect(events[0]!.added.map((p) => p.id)).toEqual([alice.id]);
    expect(watcher.peers.peers.map((p) => p.id)).toEqual([alice.id]);
    expect(lines.some((l) => l.msg === 'peers file reloaded' && l.added === 1)).toBe(true);

    // Concurrent reloads are serialised and emit once for one change.
    await writeFile(peersFile, JSON.stringify({ peers: [entry(alice, 'alice'), entry(bob, 'bob')] }));
    await Promise.all([watcher.reload(), watcher.reload(), watcher.reload()]);
    expect(events).toHaveLength(2);
  });

  it('a deleted peers file means an empty one: every peer is removed', async () => {
    const { peersFile, watcher } = await setup({ initial: { peers: [entry(alice, 'alice')] } });
    const event = nextPeers(watcher);
    await rm(peersFile);
    const { config, diff } = await event;
    expect(config).toEqual(EMPTY_PEERS);
    expect(diff.removed.map((p) => p.id)).toEqual([alice.id]);
  });

  it('replacing the grants file emits a "grants" event; an invalid one is logged and ignored', async () => {
    const { dir, grantsFile, watcher, next } = await setup();
    const jwt = 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln';
    const event = nextGrants(watcher);
    await writeFile(join(dir, '.g.tmp'), JSON.stringify({ grants: [jwt] }));
    await rename(join(dir, '.g.tmp'), grantsFile);
    expect(await event).toEqual({ grants: [jwt], revocations: [] });

    const logged = next((l) => l.level === 50 && l.file === grantsFile && l.path === '$.grants[0]', 'invalid grants file');
    await writeFile(grantsFile, JSON.stringify({ grants: ['not a jws'] }));
    await logged;
    expect(watcher.grants).toEqual({ grants: [jwt], revocations: [] });
  });

  it('a peers file in a folder that does not exist yet does not stop the watcher from starting', async () => {
    const dir = await tempDir();
    const { log, lines } = memoryLogger();
    const watcher = new ConfigWatcher({
      peersFile: join(dir, 'missing', 'peers.json'),
      grantsFile: join(dir, 'grants.json'),
      selfId: self.id,
      peers: EMPTY_PEERS,
      grants: EMPTY_GRANTS,
      log,
    });
    onTestFinished(() => watcher.stop());
    expect(() => watcher.start()).not.toThrow();
    expect(lines.some((l) => l.level === 50 && l.dir === join(dir, 'missing'))).toBe(true);
    // SIGHUP still reloads.
    await expect(watcher.reload()).resolves.toBeUndefined();
  });

  it('stop() is safe to call twice', async () => {
    const { watcher } = await setup();
    watcher.stop();
    expect(() => watcher.stop()).not.toThrow();
  });
});
