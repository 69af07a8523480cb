import * as decoding from 'lib0/decoding';

/**
 * A complete, bounded walk over a Yjs V1 update: every struct with its byte
 * span and clock range, and the delete set. Unlike `Y.decodeUpdate` it
 * refuses trailing bytes (V2 bytes, say, which decode as an empty V1 update)
 * and anything truncated, and it never touches a live document.
 */

export const StructKind = { gc: 0, deleted: 1, json: 2, binary: 3, string: 4, embed: 5, format: 6, type: 7, any: 8, doc: 9, skip: 10 } as const;

export interface ParsedStruct {
  readonly client: number;
  readonly clock: number;
  readonly length: number;
  /** Content kind: info & 0x1f (0 = GC, 10 = Skip). */
  readonly kind: number;
  /** Byte span of the whole struct (info byte to end of content) in the update. */
  readonly start: number;
  readonly end: number;
  readonly origin: readonly [number, number] | null;
  readonly rightOrigin: readonly [number, number] | null;
  /** Root type name, or the parent item id, when the struct states its parent. */
  readonly parent: string | readonly [number, number] | null;
  readonly parentSub: string | null;
  /** Decoded content for comparing units: strings, JSON values; byte spans for the rest. */
  readonly content: string | readonly unknown[] | null;
  readonly contentStart: number;
}

export interface ParsedUpdate {
  readonly structs: readonly ParsedStruct[];
  /** client → [clock, len] ranges, as in the update. */
  readonly deletes: ReadonlyMap<number, readonly (readonly [number, number])[]>;
  /** Byte offset where the delete set starts. */
  readonly dsStart: number;
}

export class UpdateDecodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UpdateDecodeError';
  }
}

const MAX_CLIENT = 2 ** 53;

/** Bounds on what one update may carry: the counts it declares are checked before any struct is read. */
export interface UpdateLimits {
  /** Structs in all, Skips included. */
  readonly structs: number;
  /** Delete ranges in all. */
  readonly deleteRanges: number;
  /**
   * When set: items one update may put at one insertion point (see
   * insertionPoint), and no client may put two there.
   */
  readonly crowd?: number;
}

const NO_LIMITS: UpdateLimits = { structs: Infinity, deleteRanges: Infinity };

/** Parses a V1 update completely; throws UpdateDecodeError on anything malformed or left over, or past `limits`. */
export function parseUpdate(update: Uint8Array, limits: UpdateLimits = NO_LIMITS): ParsedUpdate {
  const d = decoding.createDecoder(update);
  try {
    const structs: ParsedStruct[] = [];
    const numClients = readCount(d, update);
    const seenClients = new Set<number>();
    let declared = 0;
    for (let i = 0; i < numClients; i++) {
      const numStructs = readCount(d, update);
      if ((declared += numStructs) > limits.structs) throw new UpdateDecodeError(`more than ${limits.structs} structs`);
      const client = decoding.readVarUint(d);
      let clock = decoding.readVarUint(d);
      if (client >= MAX_CLIENT || seenClients.has(client)) throw new UpdateDecodeError('client listed twice or out of range');
      seenClients.add(client);
      for (let j = 0; j < numStructs; j++) {
        const s = readStruct(d, client, clock);
        structs.push(s);
        clock += s.length;
        if (clock > Number.MAX_SAFE_INTEGER) throw new UpdateDecodeError('clock out of range');
      }
    }
    const dsStart = d.pos;
    const deletes = new Map<number, [number, number][]>();
    const numDsClients = readCount(d, update);
    let ranges = 0;
    for (let i = 0; i < numDsClients; i++) {
      const client = decoding.readVarUint(d);
      const n = readCount(d, update);
      if ((ranges += n) > limits.deleteRanges) throw new UpdateDecodeError(`more than ${limits.deleteRanges} delete ranges`);
      if (client >= MAX_CLIENT || deletes.has(client)) throw new UpdateDecodeError('delete set client listed twice or out of range');
      deletes.set(client, readDeleteRanges(d, n));
    }
    if (d.pos !== update.byteLength) throw new UpdateDecodeError(`${update.byteLength - d.pos} bytes left over after the update`);
    if (limits.crowd !== undefined) checkCrowds(structs, limits.crowd);
    return { structs, deletes, dsStart };
  } catch (err) {
    if (err instanceof UpdateDecodeError) throw err;
    throw new UpdateDecodeError(`not a valid Yjs V1 update (${(err as Error).message})`);
  }
}

/**
 * Where an item goes in its parent, as Yjs places it: between its origin and
 * its right origin, or, with neither, into its parent (and map key). Items
 * of different clients at one point are concurrent inserts there, and Yjs
 * places each by walking past every one placed before it: thousands at one
 * point cost seconds (8,192 of one client, then 8,192 of another, 57 KB:
 * 10 s of blocking). A client never puts two items at one point (the second
 * has the first for a neighbour); undefined for GC runs and Skips.
 */
export function insertionPoint(s: ParsedStruct): string | undefined {
  if (s.kind === StructKind.gc || s.kind === StructKind.skip) return undefined;
  if (s.origin || s.rightOrigin) return `${s.origin?.join(':') ?? ''}>${s.rightOrigin?.join(':') ?? ''}`;
  return `${typeof s.parent === 'string' ? `'${s.parent}` : s.parent!.join(':')}/${s.parentSub ?? ''}`;
}

/**
 * Sub-documents one update may carry: each is a Y.Doc of its own in every
 * node's memory (65,536 in one update: 3 s and 107 MiB), and apps use a few.
 */
export const MAX_SUBDOCS = 1024;

/** Refuses an update with two items of one client at one insertion point, more than `crowd` at one, or more than MAX_SUBDOCS sub-documents. */
function checkCrowds(structs: readonly ParsedStruct[], crowd: number): void {
  let client: number | undefined;
  let own = new Set<string>();
  let subdocs = 0;
  for (const s of structs) {
    if (s.kind === StructKind.doc && ++subdocs > MAX_SUBDOCS) throw new UpdateDecodeError(`more than ${MAX_SUBDOCS} sub-documents`);
    const point = insertionPoint(s);
    if (point === undefined) continue;
    if (s.client !== client) [client, own] = [s.client, new Set()];
    if (own.has(point)) throw new UpdateDecodeError(`client ${s.client} puts two items at one place`);
    own.add(point);
  }
  if (crowd !== Infinity && structs.length > crowd && crowdOf(structs) > crowd) throw new UpdateDecodeError(`more than ${crowd} items at one place`);
}

/** The most items the structs put at any one insertion point. */
export function crowdOf(structs: readonly ParsedStruct[]): number {
  const counts = new Map<string, number>();
  let most = 0;
  for (const s of structs) {
    const point = insertionPoint(s);
    if (point === undefined) continue;
    const n = (counts.get(point) ?? 0) + 1;
    counts.set(point, n);
    most = Math.max(most, n);
  }
  return most;
}

/**
 * One client's delete ranges, as Yjs writes them: sorted, not overlapping,
 * within 2^53. Yjs keeps the deletions it cannot apply yet by re-encoding
 * them as deltas from the previous range: out of order or overlapping, they
 * come back as other deletions than those signed, and past 2^53 the sums
 * lose precision and that encoding throws, at this update and at every later
 * one (the document can then neither be written nor read).
 */
function readDeleteRanges(d: decoding.Decoder, n: number): [number, number][] {
  const ranges: [number, number][] = [];
  let end = 0;
  for (let j = 0; j < n; j++) {
    const clock = decoding.readVarUint(d);
    const len = decoding.readVarUint(d);
    if (len === 0) throw new UpdateDecodeError('empty delete range');
    if (clock < end) throw new UpdateDecodeError('delete ranges out of order or overlapping');
    end = clock + len;
    if (end > Number.MAX_SAFE_INTEGER) throw new UpdateDecodeError('delete range out of range');
    ranges.push([clock, len]);
  }
  return ranges;
}

/** A count can never exceed the bytes left (each entry takes at least one). */
function readCount(d: decoding.Decoder, update: Uint8Array): number {
  const n = decoding.readVarUint(d);
  if (n > update.byteLength - d.pos) throw new UpdateDecodeError('count exceeds the update size');
  return n;
}

/** An item id: a client and a clock that Yjs can do exact arithmetic on (it keeps what waits on an id in a re-encoded pending set). */
function readId(d: decoding.Decoder): [number, number] {
  const id: [number, number] = [decoding.readVarUint(d), decoding.readVarUint(d)];
  if (id[0] >= MAX_CLIENT || id[1] > Number.MAX_SAFE_INTEGER) throw new UpdateDecodeError('id out of range');
  return id;
}

function readStruct(d: decoding.Decoder, client: number, clock: number): ParsedStruct {
  // One object literal per struct, of one shape: this runs for every keystroke an app sends.
  const start = d.pos;
  const info = decoding.readUint8(d);
  const kind = info & 0x1f;
  // Yjs reads a Skip only as the bare info byte 10 in decodeUpdate, diffUpdate and mergeUpdates (applyUpdate
  // also takes flag bits): with any flag set those refuse it, and the node computes what is new with diffUpdate.
  if (kind === StructKind.skip && info !== StructKind.skip) throw new UpdateDecodeError('skip struct with flags');
  if (kind === StructKind.gc || kind === StructKind.skip) {
    const length = decoding.readVarUint(d);
    if (length === 0) throw new UpdateDecodeError('empty struct');
    return { client, clock, length, kind, start, end: d.pos, origin: null, rightOrigin: null, parent: null, parentSub: null, content: null, contentStart: d.pos };
  }
  const origin = info & 0x80 ? readId(d) : null;
  const rightOrigin = info & 0x40 ? readId(d) : null;
  let parent: string | [number, number] | null = null;
  let parentSub: string | null = null;
  if ((info & 0xc0) === 0) {
    const hasKey = decoding.readVarUint(d) === 1;
    parent = hasKey ? decoding.readVarString(d) : readId(d);
    if (info & 0x20) parentSub = decoding.readVarString(d);
  }
  // Yjs takes a reference to its own client as already integrated (it never waits for one),
  // and throws in the middle of applying an update whose reference points at or past the struct.
  for (const id of [origin, rightOrigin, Array.isArray(parent) ? parent : null]) {
    if (id && id[0] === client && id[1] >= clock) throw new UpdateDecodeError('a struct refers to its own client at or after itself');
  }
  const contentStart = d.pos;
  let length: number;
  let content: string | unknown[] | null = null;
  if (kind === StructKind.string) {
    content = decoding.readVarString(d);
    length = content.length;
  } else [length, content] = readContent(d, kind);
  if (length === 0) throw new UpdateDecodeError('empty struct');
  return { client, clock, length, kind, start, end: d.pos, origin, rightOrigin, parent, parentSub, content, contentStart };
}

/** Content other than a string: its length in clock units, and what the equivocation check compares. */
function readContent(d: decoding.Decoder, kind: number): [number, string | unknown[] | null] {
  switch (kind) {
    case StructKind.deleted:
      return [decoding.readVarUint(d), null];
    case StructKind.json: {
      const n = decoding.readVarUint(d);
      const items: unknown[] = [];
      for (let i = 0; i < n; i++) {
        const s = decoding.readVarString(d);
        items.push(s === 'undefined' ? undefined : boundedJson(s));
      }
      return [n, items];
    }
    case StructKind.binary:
      decoding.readVarUint8Array(d);
      return [1, null];
    case StructKind.embed:
      boundedJson(decoding.readVarString(d));
      return [1, null];
    case StructKind.format:
      decoding.readVarString(d);
      boundedJson(decoding.readVarString(d));
      return [1, null];
    case StructKind.type: {
      const ref = decoding.readVarUint(d);
      if (ref > 6) throw new UpdateDecodeError(`unknown type ref ${ref}`);
      if (ref === 3 || ref === 5) decoding.readVarString(d);
      return [1, null];
    }
    case StructKind.any: {
      const n = decoding.readVarUint(d);
      const items: unknown[] = [];
      for (let i = 0; i < n; i++) items.push(readAny(d, 0));
      return [n, items];
    }
    case StructKind.doc: {
      decoding.readVarString(d);
      // Yjs reads a sub-document's options as an object: anything else makes it refuse the whole update.
      const opts = readAny(d, 0);
      if (typeof opts !== 'object' || opts === null || Array.isArray(opts) || opts instanceof Uint8Array) throw new UpdateDecodeError('sub-document options must be an object');
      // Yjs lets options override the guid it read: not a string, it fails to encode the document again; undefined,
      // every node makes up a random guid of its own, and their states (and digests) differ.
      if (Object.hasOwn(opts, 'guid')) throw new UpdateDecodeError('sub-document options must not set a guid');
      return [1, null];
    }
    default:
      throw new UpdateDecodeError(`unknown struct kind ${kind}`);
  }
}

/**
 * Deepest nesting of arrays and objects accepted in content. Yjs reads and
 * renders content recursively: a value nested thousands deep would be stored
 * and then break every read of the document (and whether it parses at all
 * would depend on the stack, so nodes could disagree about it).
 */
export const MAX_NESTING = 100;

/** Refuses an array or object opened at `depth` (0: the value itself) if that passes MAX_NESTING. */
function nested(depth: number): void {
  if (depth >= MAX_NESTING) throw new UpdateDecodeError(`content nested deeper than ${MAX_NESTING}`);
}

/** lib0's readAny with nesting bounded by MAX_NESTING. */
function readAny(d: decoding.Decoder, depth: number): unknown {
  const tag = decoding.readUint8(d);
  switch (tag) {
    case 127:
      return undefined;
    case 126:
      return null;
    case 125:
      return decoding.readVarInt(d);
    case 124:
      return decoding.readFloat32(d);
    case 123:
      return decoding.readFloat64(d);
    case 122:
      // Yjs stores a BigInt, but no document holding one can be read as JSON (the API's view of it).
      throw new UpdateDecodeError('BigInt content is not supported');
    case 121:
      return false;
    case 120:
      return true;
    case 119:
      return decoding.readVarString(d);
    case 118: {
      nested(depth);
      const len = decoding.readVarUint(d);
      const obj: Record<string, unknown> = {};
      for (let i = 0; i < len; i++) {
        const key = decoding.readVarString(d);
        obj[key] = readAny(d, depth + 1);
      }
      return obj;
    }
    case 117: {
      nested(depth);
      const len = decoding.readVarUint(d);
      const arr: unknown[] = [];
      for (let i = 0; i < len; i++) arr.push(readAny(d, depth + 1));
      return arr;
    }
    case 116:
      return decoding.readVarUint8Array(d);
    default:
      throw new UpdateDecodeError(`unknown content type ${tag}`);
  }
}

/** JSON content, with nesting bounded by MAX_NESTING (checked on the text, before parsing). */
function boundedJson(text: string): unknown {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      nested(depth++);
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return JSON.parse(text);
}

/** `[clientId, from, to)` ranges of the structs an update carries (Skips excluded), maximal and sorted. */
export type ClientRanges = [number, number, number][];

export function structRanges(structs: readonly ParsedStruct[]): ClientRanges {
  // Each client's structs come together and in clock order: touching ones are
  // joined in one pass, and only the runs (a few per client) are sorted.
  const runs: [number, number, number][] = [];
  let last: [number, number, number] | undefined;
  for (const s of structs) {
    if (s.kind === StructKind.skip) continue;
    if (last && last[0] === s.client && last[1] <= s.clock && s.clock <= last[2]) last[2] = Math.max(last[2], s.clock + s.length);
    else runs.push((last = [s.client, s.clock, s.clock + s.length]));
  }
  return normalizeRanges(runs);
}

/** Sorts by client then clock and merges touching or overlapping ranges. */
export function normalizeRanges(spans: [number, number, number][]): ClientRanges {
  spans.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const out: ClientRanges = [];
  for (const s of spans) {
    const last = out[out.length - 1];
    if (last && last[0] === s[0] && s[1] <= last[2]) last[2] = Math.max(last[2], s[2]);
    else out.push([s[0], s[1], s[2]]);
  }
  return out;
}
