import { EventEmitter } from 'node:events';
import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Logger } from 'pino';
import type { NodeId } from '../types.js';
import { ConfigError } from '../errors.js';
import { diffPeers, isEmptyDiff, loadPeers, type PeersConfig, type PeersDiff } from './peers.js';
import { loadGrantsFile, type GrantsFile } from './grants-file.js';

export interface ConfigWatcherEvents {
  peers: [config: PeersConfig, diff: PeersDiff];
  grants: [file: GrantsFile];
}

/**
 * Keeps the peers and grants files live. Watches their *folders* (editors and
 * `tessera peers add` replace files by rename, which a watch on the file
 * misses), debounces, and reloads on demand (SIGHUP). A file that fails to
 * validate is logged with the exact problem; the last good one stays.
 */
export class ConfigWatcher extends EventEmitter<ConfigWatcherEvents> {
  #peers: PeersConfig;
  #grants: GrantsFile;
  readonly #peersFile: string;
  readonly #grantsFile: string;
  readonly #selfId: NodeId;
  readonly #log: Logger;
  readonly #debounceMs: number;
  #watchers: FSWatcher[] = [];
  #timer: NodeJS.Timeout | undefined;
  #reloading: Promise<void> = Promise.resolve();

  constructor(opts: { peersFile: string; grantsFile: string; selfId: NodeId; peers: PeersConfig; grants: GrantsFile; log: Logger; debounceMs?: number }) {
    super();
    this.#peersFile = opts.peersFile;
    this.#grantsFile = opts.grantsFile;
    this.#selfId = opts.selfId;
    this.#peers = opts.peers;
    this.#grants = opts.grants;
    this.#log = opts.log.child({ component: 'config' });
    this.#debounceMs = opts.debounceMs ?? 100;
  }

  get peers(): PeersConfig {
    return this.#peers;
  }

  get grants(): GrantsFile {
    return this.#grants;
  }

  start(): void {
    const names = new Set([basename(this.#peersFile), basename(this.#grantsFile)]);
    for (const dir of new Set([dirname(this.#peersFile), dirname(this.#grantsFile)])) {
      let w: FSWatcher;
      try {
        w = watch(dir, { persistent: false }, (_event, file) => {
          if (file === null || names.has(String(file))) this.#schedule();
        });
      } catch (err) {
        // A folder that does not exist yet (a missing peers file is an empty one) must not stop the node.
        this.#log.error({ err, dir }, 'cannot watch config folder; SIGHUP still reloads');
        continue;
      }
      w.on('error', (err) => this.#log.error({ err, dir }, 'cannot watch config folder; SIGHUP still reloads'));
      this.#watchers.push(w);
    }
  }

  stop(): void {
    for (const w of this.#watchers) w.close();
    this.#watchers = [];
    clearTimeout(this.#timer);
  }

  #schedule(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.reload(), this.#debounceMs);
  }

  /** Re-reads both files now; resolves once any change has been emitted. */
  reload(): Promise<void> {
    this.#reloading = this.#reloading.then(() => this.#reloadNow());
    return this.#reloading;
  }

  async #reloadNow(): Promise<void> {
    try {
      const next = await loadPeers(this.#peersFile, this.#selfId);
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
      if (JSON.stringify(next) !== JSON.stringify(this.#grants)) {
        this.#grants = next;
        this.#log.info({ grants: next.grants.length, revocations: next.revocations.length }, 'grants file reloaded');
        this.emit('grants', next);
      }
    } catch (err) {
      this.#logInvalid(err, this.#grantsFile);
    }
  }

  #logInvalid(err: unknown, file: string): void {
    if (err instanceof ConfigError) this.#log.error({ file: err.file, path: err.path }, `invalid config, keeping the last good one: ${err.message}`);
    else this.#log.error({ file, err }, 'cannot reload config, keeping the last good one');
  }
}
