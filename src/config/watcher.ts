import { EventEmitter } from 'node:events';
import { statSync, watch, type FSWatcher } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import type { Logger } from 'pino';
import type { NodeId } from '../types.js';
import { ConfigError } from '../errors.js';
import { diffPeers, isEmptyDiff, loadPeers, type PeersConfig, type PeersDiff } from './peers.js';
import { loadGrantsFile, type GrantsFile } from './grants-file.js';
import { loadNodeConfig, type NodeConfig } from './node-config.js';

export interface ConfigWatcherEvents {
  peers: [config: PeersConfig, diff: PeersDiff];
  grants: [file: GrantsFile];
}

/** Why a reload runs: an event naming a config file, any other event in a watched folder, a vanished file's second look, or SIGHUP. */
type Trigger = 'named' | 'other' | 'missing' | 'forced';

/**
 * Keeps the peers and grants files live. Watches their *folders* (editors and
 * `tessera peers add` replace files by rename, which a watch on the file
 * misses), and the folder of a symlink's target too; debounces, and reloads
 * on demand (SIGHUP). A file that fails to validate is logged with the exact
 * problem; the last good one stays. A file that vanishes (an editor's
 * backup-and-swap, or a delete then a copy) is taken as empty only if it is
 * still missing a moment later.
 */
export class ConfigWatcher extends EventEmitter<ConfigWatcherEvents> {
  #peers: PeersConfig;
  #grants: GrantsFile;
  readonly #peersFile: string;
  readonly #grantsFile: string;
  /** The running tessera.json: read at start only, so a change to it is reported, not applied. */
  readonly #node: NodeConfig | undefined;
  #nodeReported = '';
  readonly #selfId: NodeId;
  readonly #log: Logger;
  readonly #debounceMs: number;
  readonly #missingGraceMs: number;
  /** Watched folder → its watch and the entry names in it that concern us. */
  #watchers = new Map<string, { watcher: FSWatcher; names: Set<string>; ino: number }>();
  #wanted = new Map<string, Set<string>>();
  #timer: NodeJS.Timeout | undefined;
  #trigger: Trigger | undefined;
  #rearm: NodeJS.Timeout | undefined;
  #missingTimer: NodeJS.Timeout | undefined;
  #reported = new Set<string>();
  #signature = '';
  #started = false;
  #reloading: Promise<void> = Promise.resolve();

  constructor(opts: { peersFile: string; grantsFile: string; selfId: NodeId; peers: PeersConfig; grants: GrantsFile; log: Logger; debounceMs?: number; missingGraceMs?: number; nodeConfig?: NodeConfig }) {
    super();
    this.#peersFile = opts.peersFile;
    this.#grantsFile = opts.grantsFile;
    this.#node = opts.nodeConfig;
    this.#selfId = opts.selfId;
    this.#peers = opts.peers;
    this.#grants = opts.grants;
    this.#log = opts.log.child({ component: 'config' });
    this.#debounceMs = opts.debounceMs ?? 100;
    this.#missingGraceMs = opts.missingGraceMs ?? 1000;
  }

  get peers(): PeersConfig {
    return this.#peers;
  }

  get grants(): GrantsFile {
    return this.#grants;
  }

  start(): void {
    this.#started = true;
    this.#wanted = new Map();
    for (const file of this.#files()) this.#want(file);
    this.#arm();
    void this.#followLinks();
  }

  stop(): void {
    this.#started = false;
    for (const { watcher } of this.#watchers.values()) watcher.close();
    this.#watchers.clear();
    clearTimeout(this.#timer);
    clearTimeout(this.#missingTimer);
    clearInterval(this.#rearm);
    this.#rearm = undefined;
  }

  /** Re-reads both files now; resolves once any change has been emitted. */
  reload(): Promise<void> {
    return this.#enqueue('forced');
  }

  #enqueue(trigger: Trigger): Promise<void> {
    this.#reloading = this.#reloading.then(() => this.#reloadNow(trigger));
    return this.#reloading;
  }

  #want(file: string, wanted = this.#wanted): void {
    const dir = dirname(file);
    const names = wanted.get(dir) ?? new Set<string>();
    names.add(basename(file));
    wanted.set(dir, names);
  }

  /** Watches every wanted folder not watched yet; one that cannot be watched (not there yet, or gone) is tried again each second. */
  #arm(): void {
    let missing = false;
    for (const [dir, names] of this.#wanted) {
      const current = this.#watchers.get(dir);
      if (current) {
        current.names = names;
        continue;
      }
      let w: FSWatcher;
      let ino: number;
      try {
        ino = statSync(dir).ino;
        w = watch(dir, { persistent: false }, (_event, file) => this.#onEvent(dir, file === null ? null : String(file)));
      } catch (err) {
        missing = true;
        // A folder that does not exist yet (a missing peers file is an empty one) must not stop the node.
        if (!this.#reported.has(dir)) this.#log.error({ err, dir }, 'cannot watch config folder; watching again once it exists, SIGHUP still reloads');
        this.#reported.add(dir);
        continue;
      }
      w.on('error', (err) => {
        this.#log.error({ err, dir }, 'config folder watch failed; watching it again');
        this.#unwatch(dir);
      });
      this.#watchers.set(dir, { watcher: w, names, ino });
      if (this.#reported.delete(dir)) {
        this.#log.info({ dir }, 'watching config folder');
        this.#schedule('named');
      }
    }
    for (const dir of [...this.#watchers.keys()]) if (!this.#wanted.has(dir)) this.#unwatch(dir, false);
    if (missing && this.#rearm === undefined) {
      this.#rearm = setInterval(() => this.#arm(), 1000);
      this.#rearm.unref();
    } else if (!missing && this.#rearm !== undefined) {
      clearInterval(this.#rearm);
      this.#rearm = undefined;
    }
  }

  #unwatch(dir: string, rearm = true): void {
    this.#watchers.get(dir)?.watcher.close();
    this.#watchers.delete(dir);
    if (rearm && this.#started) {
      this.#reported.add(dir);
      this.#arm();
    }
  }

  #lost(dir: string): void {
    if (this.#watchers.get(dir) === undefined) return;
    this.#log.warn({ dir }, 'config folder was removed or replaced; watching it again once it exists');
    this.#unwatch(dir);
  }

  #onEvent(dir: string, file: string | null): void {
    const entry = this.#watchers.get(dir);
    if (!entry) return;
    // The folder itself was deleted or moved away (maybe replaced by another): this watch sees nothing more.
    if (file === basename(dir)) {
      void stat(dir).then(
        (s) => s.ino !== entry.ino && this.#lost(dir),
        () => this.#lost(dir),
      );
    }
    this.#schedule(file === null || entry.names.has(file) ? 'named' : 'other');
  }

  #schedule(trigger: Trigger): void {
    if (this.#trigger !== 'named') this.#trigger = trigger;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      const t = this.#trigger ?? 'other';
      this.#trigger = undefined;
      void this.#enqueue(t);
    }, this.#debounceMs);
  }

  /** A config file that is a symlink: also watch the folder of what it points to, as it is now. */
  async #followLinks(): Promise<void> {
    // Built aside and put in force whole: a re-arm while a realpath is awaited must not see half of it.
    const wanted = new Map<string, Set<string>>();
    for (const file of this.#files()) {
      this.#want(file, wanted);
      const real = await realpath(file).catch(() => undefined);
      if (real !== undefined && real !== file) this.#want(real, wanted);
    }
    if (!this.#started) return;
    this.#wanted = wanted;
    this.#arm();
  }

  /** What identifies both files' current contents, following symlinks. */
  async #currentSignature(): Promise<string> {
    const one = (f: string) =>
      stat(f).then(
        (s) => `${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`,
        (err: NodeJS.ErrnoException) => String(err.code),
      );
    return (await Promise.all(this.#files().map(one))).join('|');
  }

  async #reloadNow(trigger: Trigger): Promise<void> {
    const signature = await this.#currentSignature();
    // An event about something else in the folder (a symlink swapped in a mounted config, say) matters only if a file changed.
    if (trigger === 'other' && signature === this.#signature) return;
    this.#signature = signature;
    // A file in force that is missing waits out the grace period (SIGHUP and the grace's own look do not).
    const waits = trigger !== 'forced' && trigger !== 'missing';
    if (waits && (await this.#vanished())) return;
    clearTimeout(this.#missingTimer);
    // Watch where a symlink points now before reading it: an edit there after this read is then seen.
    if (this.#started) await this.#followLinks();
    try {
      // The file may also vanish between that look and this read (an editor saving just then): an empty result gets the same grace.
      const next = await loadPeers(this.#peersFile, this.#selfId);
      if (waits && next.peers.length === 0 && next.authorities.length === 0 && (await this.#vanished())) return;
      const diff = diffPeers(this.#peers, next);
      if (!isEmptyDiff(diff)) {
        this.#peers = next;
        this.#log.info(
          { added: diff.added.length, removed: diff.removed.length, rekeyed: diff.rekeyed.length, changed: diff.changed.length, authoritiesChanged: diff.authoritiesChanged },
          'peers file reloaded',
        );
        this.emit('peers', next, diff);
      }
    } catch (err) {
      this.#logInvalid(err, this.#peersFile);
    }
    try {
      const next = await loadGrantsFile(this.#grantsFile);
      if (waits && next.grants.length === 0 && next.revocations.length === 0 && (await this.#vanished())) return;
      if (JSON.stringify(next) !== JSON.stringify(this.#grants)) {
        this.#grants = next;
        this.#log.info({ grants: next.grants.length, revocations: next.revocations.length }, 'grants file reloaded');
        this.emit('grants', next);
      }
    } catch (err) {
      this.#logInvalid(err, this.#grantsFile);
    }
    await this.#checkNodeConfig();
  }

  /** The files watched: the peers and grants files, and tessera.json when known. */
  #files(): string[] {
    return [this.#peersFile, this.#grantsFile, ...(this.#node ? [this.#node.file] : [])];
  }

  /** tessera.json is read at start: say once when it changed (which keys need a restart), or when it became invalid. */
  async #checkNodeConfig(): Promise<void> {
    if (!this.#node) return;
    let report: string;
    try {
      const next = await loadNodeConfig(this.#node.dataDir);
      const keys = (Object.keys(next) as (keyof NodeConfig)[]).filter((k) => JSON.stringify(next[k]) !== JSON.stringify(this.#node![k]));
      report = keys.join(',');
      if (report !== this.#nodeReported && keys.length) this.#log.warn({ file: this.#node.file, keys }, 'tessera.json changed; restart the node to apply it');
    } catch (err) {
      report = err instanceof ConfigError ? `invalid:${err.path}:${err.message}` : 'unreadable';
      if (report !== this.#nodeReported) this.#logInvalid(err, this.#node.file);
    }
    this.#nodeReported = report;
  }

  /**
   * A file in force that is missing now is most likely mid-save: look again
   * after a grace period before taking it as empty (SIGHUP does not wait).
   */
  async #vanished(): Promise<boolean> {
    const gone = async (file: string, inForce: boolean) => inForce && (await stat(file).then(() => false, (err: NodeJS.ErrnoException) => err.code === 'ENOENT'));
    const files = [
      (await gone(this.#peersFile, this.#peers.peers.length > 0 || this.#peers.authorities.length > 0)) ? this.#peersFile : undefined,
      (await gone(this.#grantsFile, this.#grants.grants.length > 0 || this.#grants.revocations.length > 0)) ? this.#grantsFile : undefined,
    ].filter((f) => f !== undefined);
    if (!files.length) return false;
    this.#log.warn({ files, graceMs: this.#missingGraceMs }, 'config file missing; taken as empty if it is still missing after the grace period');
    clearTimeout(this.#missingTimer);
    this.#missingTimer = setTimeout(() => void this.#enqueue('missing'), this.#missingGraceMs);
    this.#missingTimer.unref();
    return true;
  }

  #logInvalid(err: unknown, file: string): void {
    if (err instanceof ConfigError) this.#log.error({ file: err.file, path: err.path }, `invalid config, keeping the last good one: ${err.message}`);
    else this.#log.error({ file, err }, 'cannot reload config, keeping the last good one');
  }
}
