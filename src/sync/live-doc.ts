import * as Y from 'yjs';
import type { DocName, FeedKey } from '../types.js';
import type { Vector } from '../store/records.js';
import { OverlapIndex } from './overlap.js';
import type { DeleteRanges } from '../yjs/build.js';
import type { EnvelopeClaims } from './envelope.js';
import type { ParsedUpdate } from '../yjs/parse.js';
import { hardenYjs } from '../yjs/harden.js';
import { leaveFormattingAsWrittenIn } from '../yjs/formatting.js';

// Small updates must not cost a node seconds, gigabytes or its stack (src/yjs/harden.ts).
hardenYjs();

/** An envelope verified and waiting for an earlier seq of its feed. */
export interface HeldEnvelope {
  readonly token: string;
  readonly update: Uint8Array;
  readonly claims: EnvelopeClaims;
  readonly parsed: ParsedUpdate;
}

export interface LocalWrite {
  readonly update: Uint8Array;
  /** The update as parsed when it was validated. */
  readonly parsed: ParsedUpdate;
  /** Who sent it (an app's connection), if anyone in particular. */
  readonly author: object | undefined;
  readonly resolve: (r: { vector: Vector; refused: RefusedPart[] }) => void;
  readonly reject: (err: unknown) => void;
  readonly refused: RefusedPart[];
}

/** Pending structs parked in the store (key space `parked`, key `pending\0DOC\0...`). */
export interface ParkedPending {
  readonly key: string;
  /** [client, clock] of what they wait for: once any of these is held, they are brought back. */
  readonly missing: readonly (readonly [number, number])[];
  readonly ranges: readonly (readonly [number, number, number])[];
}

/** A part of an update that was not applied, and why. */
export interface RefusedPart {
  readonly client: number;
  readonly from: number;
  readonly to: number;
  readonly reason: 'equivocation' | 'revoked';
  readonly origins: readonly string[];
}

/**
 * One document in memory: its Y.Doc (gc on, as on every node), the vector of
 * envelopes applied, and the per-document queues. Every operation on it runs
 * through `run`, one at a time.
 */
export class LiveDoc {
  readonly name: DocName;
  ydoc: Y.Doc;
  vector: Vector;
  overlap = new OverlapIndex();
  /** [client, from, to) ranges of dropped envelopes (beyond a revocation cutoff): never signed again for an app. */
  dropped: [number, number, number][] = [];
  /** [client, from, to) deletions made by dropped envelopes. */
  droppedDeletes: [number, number, number][] = [];
  /** Pending structs moved to the store beyond maxPendingBytes: their key, what they wait for, and their [client, from, to) ranges. */
  parked: ParkedPending[] = [];
  /** Deletions from local apps of items this node does not hold yet. */
  deferredDeletes: DeleteRanges = new Map();
  /** A write of the deferred deletions failed: the store may hold them as they were, or as that write left them. */
  deferredUnsure = false;
  readonly held = new Map<FeedKey, Map<number, HeldEnvelope>>();
  heldCount = 0;
  heldBytes = 0;
  readonly localQueue: LocalWrite[] = [];
  signing = false;
  /** When it was last opened or worked on, by the node's clock. */
  lastUsed: number;
  sinceSnapshot = 0;
  /** Open y-websocket connections, SSE streams and other users that keep it loaded. */
  users = 0;
  #chain: Promise<unknown> = Promise.resolve();

  /** Unloaded: no longer the document; work that finds it opens the document again. */
  retired = false;
  /** SHA-256 of the encoded state, cached until the document changes. */
  digest: string | undefined;

  readonly #now: () => number;

  constructor(name: DocName, vector: Vector, now: () => number = Date.now) {
    this.name = name;
    this.vector = vector;
    this.#now = now;
    this.lastUsed = now();
    this.ydoc = this.#newYDoc();
  }

  #newYDoc(): Y.Doc {
    // Named, so Yjs does not draw a random uuid (dozens of getRandomValues calls) for every document loaded.
    const ydoc = new Y.Doc({ gc: true, guid: this.name });
    leaveFormattingAsWrittenIn(ydoc);
    // Not 'update': a listener of that makes Yjs encode every transaction's update.
    ydoc.on('afterTransaction', () => (this.digest = undefined));
    return ydoc;
  }

  /** Starts over with an empty Y.Doc and indexes, before the document is filled again from the store. */
  reset(): void {
    const old = this.ydoc;
    this.ydoc = this.#newYDoc();
    this.digest = undefined;
    this.overlap = new OverlapIndex();
    this.dropped = [];
    this.droppedDeletes = [];
    this.vector = {};
    this.deferredDeletes = new Map();
    this.deferredUnsure = false;
    this.parked = [];
    if (old.store.clients.size) old.destroy();
  }

  /** Runs `fn` after every earlier operation on this document has finished. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    this.busy++;
    const next = this.#chain.then(fn, fn);
    this.#chain = next.catch(() => undefined);
    this.lastUsed = this.#now();
    const done = () => void this.busy--;
    void next.then(done, done);
    return next;
  }

  /** Operations queued or running under the lock (a document with any is not idle). */
  busy = 0;
}
