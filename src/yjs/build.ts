import * as encoding from 'lib0/encoding';
import { StructKind, type ParsedStruct } from './parse.js';

/** client → sorted, non-overlapping [clock, len] ranges. */
export type DeleteRanges = Map<number, [number, number][]>;

/**
 * Builds a V1 update from whole structs cut out of `source` (gaps between
 * kept structs of one client become Skip structs) and a delete set.
 */
export function buildUpdate(source: Uint8Array, structs: readonly ParsedStruct[], deletes: DeleteRanges): Uint8Array {
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

export function writeDeleteSet(e: encoding.Encoder, deletes: DeleteRanges): void {
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
