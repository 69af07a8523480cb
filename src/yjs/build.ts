import * as encoding from 'lib0/encoding';
import { StructKind, type ParsedStruct, type ParsedUpdate } from './parse.js';
import { firstEndingAfter } from './ranges.js';

/** client → sorted, non-overlapping [clock, len] ranges. */
export type DeleteRanges = Map<number, [number, number][]>;
/** The same, only read (a parsed update's deletes, passed on as they are). */
export type ReadonlyDeleteRanges = ReadonlyMap<number, readonly (readonly [number, number])[]>;

/**
 * Builds a V1 update from whole structs cut out of `source` (gaps between
 * kept structs of one client become Skip structs) and a delete set.
 */
export function buildUpdate(source: Uint8Array, structs: readonly ParsedStruct[], deletes: ReadonlyDeleteRanges): Uint8Array {
  const e = encoding.createEncoder();
  const byClient = new Map<number, ParsedStruct[]>();
  for (const s of structs) {
    if (s.kind === StructKind.skip) continue;
    const list = byClient.get(s.client) ?? [];
    list.push(s);
    byClient.set(s.client, list);
  }
  encoding.writeVarUint(e, byClient.size);
  for (const [client, list] of byClient) {
    list.sort((a, b) => a.clock - b.clock);
    let count = list.length;
    for (let i = 1; i < list.length; i++) if (list[i]!.clock > list[i - 1]!.clock + list[i - 1]!.length) count++;
    encoding.writeVarUint(e, count);
    encoding.writeVarUint(e, client);
    encoding.writeVarUint(e, list[0]!.clock);
    let next = list[0]!.clock;
    for (const s of list) {
      if (s.clock > next) {
        encoding.writeUint8(e, StructKind.skip);
        encoding.writeVarUint(e, s.clock - next);
      }
      encoding.writeUint8Array(e, source.subarray(s.start, s.end));
      next = s.clock + s.length;
    }
  }
  writeDeleteSet(e, deletes);
  return encoding.toUint8Array(e);
}

export function writeDeleteSet(e: encoding.Encoder, deletes: ReadonlyDeleteRanges): void {
  const clients = [...deletes].filter(([, r]) => r.length > 0);
  encoding.writeVarUint(e, clients.length);
  for (const [client, ranges] of clients) {
    encoding.writeVarUint(e, client);
    encoding.writeVarUint(e, ranges.length);
    for (const [clock, len] of ranges) {
      encoding.writeVarUint(e, clock);
      encoding.writeVarUint(e, len);
    }
  }
}

/** Sorts and merges ranges per client in place. */
export function normalizeDeletes(deletes: DeleteRanges): DeleteRanges {
  for (const [client, ranges] of deletes) {
    ranges.sort((a, b) => a[0] - b[0]);
    const out: [number, number][] = [];
    for (const [clock, len] of ranges) {
      const last = out[out.length - 1];
      if (last && clock <= last[0] + last[1]) last[1] = Math.max(last[1], clock + len - last[0]);
      else out.push([clock, len]);
    }
    if (out.length) deletes.set(client, out);
    else deletes.delete(client);
  }
  return deletes;
}

type Id = readonly [number, number] | null;

/** A run of typing being joined: its first struct, its text, and its clock span (shared with the index of runs). */
interface Run {
  readonly head: ParsedStruct;
  readonly text: string[];
  length: number;
  readonly span: [number, number];
}
const sameId = (a: Id, b: Id) => (a === null ? b === null : b !== null && a[0] === b[0] && a[1] === b[1]);

/**
 * Joins runs of typed characters into one string struct each, as Yjs itself
 * does in a document: a string struct whose origin is the last character of
 * the struct before it (same client, next clock) and whose right origin is
 * the same is the continuation of it. An app sends every keystroke as its
 * own struct; joined, a batch of typing costs every later step (signing,
 * storing, sending, verifying, applying) one struct instead of thousands.
 *
 * A run starts only at a struct `mayStart` vouches for: one that is known to
 * sit in a sequence (no `parentSub`), since a continuation inherits its
 * map key from its origin and a map entry must not be joined. Everything
 * else is copied byte for byte, the delete set included, and so is every
 * struct `keepApart` names (one that will be left out of what is signed:
 * joined, it would take new keystrokes out with it). Returns the update
 * itself when nothing joins.
 */
export function joinTyping(source: Uint8Array, parsed: ParsedUpdate, mayStart: (s: ParsedStruct, inRuns: (id: Id) => boolean) => boolean, keepApart: (s: ParsedStruct) => boolean = () => false): Uint8Array {
  const groups: ParsedStruct[][] = [];
  for (const s of parsed.structs) {
    const g = groups[groups.length - 1];
    if (g && g[0]!.client === s.client) g.push(s);
    else groups.push([s]);
  }
  // Per client, [from, to) of the strings known to sit in a sequence (in clock order, as
  // each client's structs come): an origin inside one vouches for its continuation.
  const runs = new Map<number, [number, number][]>();
  const inRuns = (id: Id) => {
    if (id === null) return false;
    const list = runs.get(id[0]);
    if (!list) return false;
    const i = firstEndingAfter(list, id[1]);
    return i < list.length && list[i]![0] <= id[1];
  };
  let joined = false;
  const e = encoding.createEncoder();
  encoding.writeVarUint(e, groups.length);
  for (const g of groups) {
    const pieces: (ParsedStruct | Run)[] = [];
    let run: Run | undefined;
    for (const s of g) {
      if (s.kind !== StructKind.string || keepApart(s)) {
        run = undefined;
        pieces.push(s);
        continue;
      }
      const end = run && run.head.clock + run.length;
      if (run && s.clock === end && s.origin !== null && s.origin[0] === s.client && s.origin[1] === end - 1 && sameId(s.rightOrigin, run.head.rightOrigin)) {
        run.text.push(s.content as string);
        run.length += s.length;
        run.span[1] = s.clock + s.length;
        joined = true;
        continue;
      }
      if (mayStart(s, inRuns)) {
        run = { head: s, text: [s.content as string], length: s.length, span: [s.clock, s.clock + s.length] };
        (runs.get(s.client) ?? runs.set(s.client, []).get(s.client)!).push(run.span);
        pieces.push(run);
      } else {
        run = undefined;
        pieces.push(s);
      }
    }
    encoding.writeVarUint(e, pieces.length);
    encoding.writeVarUint(e, g[0]!.client);
    encoding.writeVarUint(e, g[0]!.clock);
    for (const p of pieces) {
      if ('text' in p) {
        encoding.writeUint8Array(e, source.subarray(p.head.start, p.head.contentStart));
        encoding.writeVarString(e, p.text.join(''));
      } else encoding.writeUint8Array(e, source.subarray(p.start, p.end));
    }
  }
  if (!joined) return source;
  encoding.writeUint8Array(e, source.subarray(parsed.dsStart));
  return encoding.toUint8Array(e);
}

/**
 * Several updates as one, when that needs no merging: they only add structs
 * (no delete set, no Skip), and each client's structs follow on from each
 * other across the updates, in order, with no gap or overlap (an app's
 * keystrokes, one update each). Their struct bytes are concatenated and
 * their parses shifted, instead of decoding them all again in
 * `Y.mergeUpdates` and parsing the result. Undefined when they do not fit.
 */
export function concatUpdates(parts: readonly { readonly update: Uint8Array; readonly parsed: ParsedUpdate }[]): { update: Uint8Array; parsed: ParsedUpdate } | undefined {
  const byClient = new Map<number, { first: number; next: number; structs: [Uint8Array, ParsedStruct][] }>();
  for (const { update, parsed } of parts) {
    if (parsed.deletes.size) return undefined;
    for (const s of parsed.structs) {
      if (s.kind === StructKind.skip) return undefined;
      const c = byClient.get(s.client);
      if (!c) byClient.set(s.client, { first: s.clock, next: s.clock + s.length, structs: [[update, s]] });
      else if (s.clock !== c.next) return undefined;
      else {
        c.next += s.length;
        c.structs.push([update, s]);
      }
    }
  }
  const e = encoding.createEncoder();
  const structs: ParsedStruct[] = [];
  encoding.writeVarUint(e, byClient.size);
  // From the highest client id down, as Yjs writes them (its merge relies on that order).
  for (const [client, c] of [...byClient].sort(([a], [b]) => b - a)) {
    encoding.writeVarUint(e, c.structs.length);
    encoding.writeVarUint(e, client);
    encoding.writeVarUint(e, c.first);
    for (const [source, s] of c.structs) {
      const start = encoding.length(e);
      encoding.writeUint8Array(e, source.subarray(s.start, s.end));
      structs.push({ ...s, start, end: start + (s.end - s.start), contentStart: start + (s.contentStart - s.start) });
    }
  }
  const dsStart = encoding.length(e);
  encoding.writeVarUint(e, 0);
  return { update: encoding.toUint8Array(e), parsed: { structs, deletes: new Map(), dsStart } };
}
