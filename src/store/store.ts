import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { Level } from 'level';
import type { Logger } from 'pino';
import { DataDirInUseError, StoreError } from '../errors.js';
import type { FeedId } from '../types.js';

/**
 * Key spaces (DESIGN.md §6). Each is a one-letter prefix so that a batch can
 * span several of them atomically and a range scan never leaks into another.
 */
export const Space = {
  meta: 'm',
  envelope: 'e',
  vector: 'v',
  overlap: 'o',
  snapshot: 's',
  originKey: 'k',
  grant: 'g',
  revocation: 'r',
  dropped: 'x',
  quarantine: 'q',
  parked: 'p',
} as const;
export type Space = (typeof Space)[keyof typeof Space];

/** A feed id as envelope claims allow it (this store makes 22 characters). */
const FEED = /^[A-Za-z0-9_-]{1,64}$/;

/** What `#readMeta` answers for a record that is there but not what this store writes. */
const CORRUPT = Symbol('corrupt');

/** Most writes joined in one group commit. */
const MAX_GROUP = 256;

export type StoreOp =
  | { readonly type: 'put'; readonly space: Space; readonly key: string; readonly value: Uint8Array }
  | { readonly type: 'del'; readonly space: Space; readonly key: string };

export interface StoreOptions {
  readonly durability: 'fsync' | 'relaxed';
  readonly log: Logger;
  /** Told how long each group commit took, in seconds (for /metrics). */
  readonly onCommit?: (seconds: number) => void;
}

/**
 * A record read back from the store that is not what this node writes there
 * (a value truncated or overwritten on disk): a store failure, which names
 * the record, rather than a parse error from deep inside whatever read it.
 */
export class CorruptRecordError extends StoreError {
  override readonly code = 'ERR_STORE_CORRUPT';
  constructor(problem: string, record?: { readonly space: Space; readonly key: string }) {
    super(`corrupt record in the store${record ? ` (${record.space} ${JSON.stringify(record.key)})` : ''}: ${problem}`);
  }
}

const enc = new TextEncoder();
const dec = new TextDecoder();
export const json = {
  encode: (v: unknown): Uint8Array => enc.encode(JSON.stringify(v)),
  decode: <T>(b: Uint8Array, record?: { readonly space: Space; readonly key: string }): T => {
    try {
      return JSON.parse(dec.decode(b)) as T;
    } catch (err) {
      throw new CorruptRecordError(`not valid JSON (${(err as Error).message})`, record);
    }
  },
};

/**
 * The node's one LevelDB database. Writes are atomic batches, fsynced unless
 * durability is "relaxed". A write error is never swallowed: it is thrown to
 * the caller, and the store closes and reopens itself before writing again
 * (LevelDB drops everything after a half-written log record at the next open,
 * so writing on through the same handle would lose data later).
 */
export interface EntriesOptions {
  readonly after?: string;
  readonly limit?: number;
  readonly reverse?: boolean;
}

/** What reading needs: the store itself, or a snapshot of it. */
export interface StoreReader {
  get(space: Space, key: string): Promise<Uint8Array | undefined>;
  getJson<T>(space: Space, key: string): Promise<T | undefined>;
  entries(space: Space, prefix?: string, opts?: EntriesOptions): AsyncGenerator<[string, Uint8Array]>;
}

export interface StoreSnapshot extends StoreReader {
  close(): Promise<void>;
}

type DbSnapshot = ReturnType<Level<string, Uint8Array>['snapshot']>;

/** An op as abstract-level hands it to its implementation, encodings normalised. */
type RawOp =
  | { readonly type: 'put'; readonly key: string; readonly keyEncoding: 'utf8'; readonly value: Uint8Array; readonly valueEncoding: 'view' }
  | { readonly type: 'del'; readonly key: string; readonly keyEncoding: 'utf8' };

/** abstract-level's private batch write (classic-level: one atomic LevelDB WriteBatch). */
interface RawBatch {
  _batch(ops: readonly RawOp[], options: { readonly sync: boolean }): Promise<void>;
}

/** A snapshot and the handle that took it. */
interface SnapshotAt {
  readonly db: Level<string, Uint8Array>;
  readonly snapshot: DbSnapshot;
}

export class Store implements StoreReader {
  readonly #path: string;
  readonly #opts: StoreOptions;
  readonly #log: Logger;
  #db: Level<string, Uint8Array>;
  #feed!: FeedId;
  #freshFeed = false;
  #broken = false;
  #reopening: Promise<void> | undefined;
  #closed = false;

  private constructor(path: string, opts: StoreOptions) {
    this.#path = path;
    this.#opts = opts;
    this.#log = opts.log.child({ component: 'store' });
    this.#db = Store.#create(path);
  }

  static #create(path: string): Level<string, Uint8Array> {
    return new Level<string, Uint8Array>(path, { keyEncoding: 'utf8', valueEncoding: 'view' });
  }

  /** Opens (creating if needed) the database at `path`. Throws DataDirInUseError if another process holds it. */
  static async open(path: string, opts: StoreOptions): Promise<Store> {
    // Every document is in here in clear: only this node's user may read it, whatever the data directory's mode.
    await mkdir(path, { recursive: true, mode: 0o700 });
    const store = new Store(path, opts);
    await store.#openDb();
    await store.#initFeed();
    return store;
  }

  async #openDb(): Promise<void> {
    try {
      await this.#db.open();
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause;
      if (cause?.code === 'LEVEL_LOCKED') throw new DataDirInUseError(this.#path, ' (its LevelDB store is locked)');
      throw new StoreError(`cannot open store at ${this.#path}`, err);
    }
  }

  /**
   * The feed this store writes its own envelopes under. A new store gets a
   * new feed; so does a relaxed-durability store after an unclean stop, since
   * an envelope it forwarded may be gone and reusing its seq would fork.
   */
  async #initFeed(): Promise<void> {
    const feed = await this.#readMeta('feed', (v): v is string => typeof v === 'string' && FEED.test(v));
    // While open, `running` holds the durability the store is written with: what
    // an unclean stop may have lost depends on how the run that stopped wrote,
    // not on how this one will (a store written relaxed and reopened with fsync
    // may have lost an envelope it forwarded all the same). `true` is how older
    // stores marked a run without saying how it wrote.
    const running = await this.#readMeta('running', (v): v is boolean | StoreOptions['durability'] => typeof v === 'boolean' || v === 'fsync' || v === 'relaxed');
    // Unreadable, it says nothing about how the last run stopped: as unclean as can be.
    const unclean = running === CORRUPT || running === 'relaxed' || (running === true && this.#opts.durability === 'relaxed');
    if (feed === undefined || feed === CORRUPT || unclean) {
      this.#feed = randomBytes(16).toString('base64url') as FeedId;
      this.#freshFeed = true;
      if (feed === CORRUPT || running === CORRUPT) this.#log.error({ feed: this.#feed }, 'the store\'s record of its feed or of its last run is corrupt: starting a new feed');
      else if (unclean) this.#log.warn({ previous: feed, feed: this.#feed }, 'unclean stop with relaxed durability: starting a new feed');
    } else {
      this.#feed = feed as FeedId;
    }
    await this.#batch(
      [
        { type: 'put', space: Space.meta, key: 'feed', value: json.encode(this.#feed) },
        { type: 'put', space: Space.meta, key: 'running', value: json.encode(this.#opts.durability) },
      ],
      true,
    );
  }

  /**
   * A meta record, CORRUPT if it is not what this store writes there. A new
   * feed is always safe (as after an unclean relaxed stop); going on with one
   * read from a corrupt record is not, nor is refusing to start over it.
   */
  async #readMeta<T>(key: string, valid: (v: unknown) => v is T): Promise<T | undefined | typeof CORRUPT> {
    let v: unknown;
    try {
      v = await this.getJson<unknown>(Space.meta, key);
    } catch (err) {
      if (!(err instanceof CorruptRecordError)) throw err;
      return CORRUPT;
    }
    return v === undefined ? undefined : valid(v) ? v : CORRUPT;
  }

  get feed(): FeedId {
    return this.#feed;
  }

  /** Whether this open started a new feed (new store, or relaxed after an unclean stop). */
  get freshFeed(): boolean {
    return this.#freshFeed;
  }

  /** False after a write error until the store has been reopened. */
  get writable(): boolean {
    return !this.#broken && !this.#closed;
  }

  /** Writes all ops or none, durable before it resolves (unless relaxed). */
  async write(ops: readonly StoreOp[]): Promise<void> {
    if (ops.length === 0) return;
    // Group commit: writes that arrive while a batch is being written go
    // together in the next one (one fsync for all), each still all-or-nothing.
    const entry = { ops, done: undefined as unknown as (err?: unknown) => void };
    const promise = new Promise<void>((resolve, reject) => (entry.done = (err) => (err === undefined ? resolve() : reject(err))));
    this.#queue.push(entry);
    if (!this.#writing) void this.#drain();
    return promise;
  }

  readonly #queue: { ops: readonly StoreOp[]; done: (err?: unknown) => void }[] = [];
  #writing = false;

  async #drain(): Promise<void> {
    this.#writing = true;
    while (this.#queue.length) {
      const group = this.#queue.splice(0, MAX_GROUP);
      try {
        const started = performance.now();
        await this.#batch(group.flatMap((g) => g.ops), this.#opts.durability === 'fsync');
        this.#opts.onCommit?.((performance.now() - started) / 1000);
        for (const g of group) g.done();
      } catch (err) {
        for (const g of group) g.done(err);
      }
    }
    this.#writing = false;
  }

  async #batch(ops: readonly StoreOp[], sync: boolean): Promise<void> {
    if (this.#closed) throw new StoreError('store is closed');
    if (this.#broken) await this.#reopen();
    try {
      await this.#write(ops, sync);
    } catch (err) {
      this.#broken = true;
      this.#log.error({ err }, 'store write failed; writes are refused until the store reopens');
      throw new StoreError('store write failed', err);
    }
  }

  /**
   * One LevelDB write batch: atomic, however many ops. Handed to
   * abstract-level's private `_batch` (its documented API for implementors,
   * which classic-level turns into one WriteBatch) rather than the public
   * `batch()`: that one clones every op with two object spreads, and a chained
   * batch makes a native batch object and one native call per op, each
   * costing more than the write itself for the few small ops of an edit. What
   * the public path would still do here is done here: it refuses a handle
   * that is not open (a closing handle waits for a batch queued before it),
   * refuses a value that is not bytes, and gives each op its encodings in
   * their normalised form (keys are strings, values Uint8Arrays: the bytes
   * stored are the same). Nothing here uses hooks or write events, which
   * this path skips.
   */
  #write(ops: readonly StoreOp[], sync: boolean): Promise<void> {
    if (ops.length === 0) return Promise.resolve();
    const db = this.#db;
    if (db.status !== 'open') return Promise.reject(new StoreError(`store is ${db.status}`));
    const raw: RawOp[] = [];
    for (const op of ops) {
      const key = op.space + op.key;
      if (op.type === 'del') raw.push({ type: 'del', key, keyEncoding: 'utf8' });
      // The check the public path makes: LevelDB would store anything else as an empty value.
      else if (op.value instanceof Uint8Array) raw.push({ type: 'put', key, keyEncoding: 'utf8', value: op.value, valueEncoding: 'view' });
      else return Promise.reject(new StoreError(`not bytes: the value of ${JSON.stringify(key)}`));
    }
    return (db as unknown as RawBatch)._batch(raw, { sync });
  }

  /** Closes and reopens the database handle; shared by concurrent callers. */
  #reopen(): Promise<void> {
    this.#reopening ??= (async () => {
      try {
        await this.#db.close();
      } catch (err) {
        this.#log.warn({ err }, 'closing the failed store handle');
      }
      this.#db = Store.#create(this.#path);
      await this.#openDb();
      this.#broken = false;
      this.#log.info('store reopened after a write error');
    })().finally(() => {
      this.#reopening = undefined;
    });
    return this.#reopening;
  }

  async get(space: Space, key: string): Promise<Uint8Array | undefined> {
    return this.#get(space, key);
  }

  async getJson<T>(space: Space, key: string): Promise<T | undefined> {
    const v = await this.get(space, key);
    return v === undefined ? undefined : json.decode<T>(v, { space, key });
  }

  /**
   * Entries of a key space whose keys start with `prefix`, in key order,
   * keys returned without the space prefix. `after` resumes past a key.
   */
  entries(space: Space, prefix = '', opts: EntriesOptions = {}): AsyncGenerator<[string, Uint8Array]> {
    return this.#entries(space, prefix, opts);
  }

  /**
   * A consistent view of the store as it is now: reads through it see no
   * write made after it was taken (a check that reads a vector and then its
   * envelopes, say, while the node goes on writing). Close it when done.
   */
  snapshot(): StoreSnapshot {
    // Reads go to the handle that took the snapshot: after a reopen it is closed, and so is the snapshot.
    const db = this.#db;
    let snapshot: DbSnapshot;
    try {
      snapshot = db.snapshot();
    } catch (err) {
      throw new StoreError('store snapshot failed', err);
    }
    const at = { db, snapshot };
    return {
      get: (space, key) => this.#get(space, key, at),
      getJson: async <T>(space: Space, key: string) => {
        const v = await this.#get(space, key, at);
        return v === undefined ? undefined : json.decode<T>(v, { space, key });
      },
      entries: (space, prefix = '', opts = {}) => this.#entries(space, prefix, opts, at),
      close: () => snapshot.close().catch(() => undefined),
    };
  }

  async #get(space: Space, key: string, at?: SnapshotAt): Promise<Uint8Array | undefined> {
    try {
      return await (at?.db ?? this.#db).get(space + key, at ? { snapshot: at.snapshot } : {});
    } catch (err) {
      throw new StoreError(`store read failed (${space})`, err);
    }
  }

  async *#entries(space: Space, prefix: string, opts: EntriesOptions, at?: SnapshotAt): AsyncGenerator<[string, Uint8Array]> {
    const lower = space + prefix;
    const range = opts.after === undefined ? { gte: lower } : { gt: space + opts.after };
    try {
      for await (const [k, v] of (at?.db ?? this.#db).iterator({ ...range, lt: lower + '\uffff', limit: opts.limit ?? -1, reverse: opts.reverse ?? false, ...(at ? { snapshot: at.snapshot } : {}) })) {
        yield [k.slice(1), v];
      }
    } catch (err) {
      throw new StoreError(`store scan failed (${space})`, err);
    }
  }

  /** Marks a clean stop and closes. Safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    try {
      if (!this.#broken) await this.#batch([{ type: 'put', space: Space.meta, key: 'running', value: json.encode(false) }], true);
    } finally {
      this.#closed = true;
      await this.#db.close();
    }
  }
}
