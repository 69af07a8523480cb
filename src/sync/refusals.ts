import type { DocName, FeedKey } from '../types.js';
import type { Vector } from '../store/records.js';
import { feedOrigin } from './overlap.js';

/** (document, feed) pairs of a peer's notWanted remembered in one session; beyond it, what it declines is sent anyway. */
const MAX_DECLINED = 65_536;
/**
 * Bytes of names this node remembers refusing in one session (checked by
 * policy before any signature, so a peer can make them up); beyond it, a
 * refused feed is offered again at the next announce.
 */
const MAX_REFUSED_BYTES = 1024 * 1024;
/** What one remembered name costs beside its characters. */
const ENTRY_BYTES = 64;

/**
 * The sending side of `notWanted` (PROTOCOL.md §6.6): the feeds a peer
 * declined, per document, for one session. The caller adds only documents
 * this node holds and may send the peer, so made-up names are not kept.
 */
export class Declined {
  readonly #byDoc = new Map<DocName, Set<string>>();
  #count = 0;

  has(doc: DocName, feed: string): boolean {
    return this.#byDoc.get(doc)?.has(feed) ?? false;
  }

  /** Remembers one pair; false once the bound is reached (the rest of that message need not be read). */
  add(doc: DocName, feed: string): boolean {
    if (this.#count >= MAX_DECLINED) return false;
    const feeds = this.#byDoc.get(doc) ?? this.#byDoc.set(doc, new Set()).get(doc)!;
    if (!feeds.has(feed)) {
      feeds.add(feed);
      this.#count++;
    }
    return true;
  }

  /** A `want` for the document withdraws the peer's refusals of it. */
  withdraw(doc: DocName): void {
    this.#count -= this.#byDoc.get(doc)?.size ?? 0;
    this.#byDoc.delete(doc);
  }

  clear(): void {
    this.#byDoc.clear();
    this.#count = 0;
  }
}

/**
 * The receiving side (PROTOCOL.md §6.6): what this node refused from a peer
 * in one session. Feeds whose author may not write the document count as
 * held up to the highest seq refused, in the vectors compared with the
 * peer's announces and sent in wants, so a feed refused once is not sent
 * whole again at every announce. Documents the peer may not exchange are
 * only remembered, to want them again when that may have changed. Bounded
 * by bytes of names.
 */
export class Refusals {
  readonly #feeds = new Map<DocName, Map<string, number>>();
  readonly #unexchangeable = new Set<DocName>();
  #bytes = 0;

  /** A feed refused because its author may not write the document. */
  noteFeed(doc: DocName, feed: string, seq: number): void {
    const feeds = this.#feeds.get(doc);
    const had = feeds?.get(feed);
    if (had !== undefined) {
      if (seq > had) feeds!.set(feed, seq);
      return;
    }
    const cost = feed.length + ENTRY_BYTES + (feeds ? 0 : doc.length + ENTRY_BYTES);
    if (this.#bytes + cost > MAX_REFUSED_BYTES) return;
    (feeds ?? this.#feeds.set(doc, new Map()).get(doc)!).set(feed, seq);
    this.#bytes += cost;
  }

  /** A document refused because the peer may not exchange it. */
  noteUnexchangeable(doc: DocName): void {
    if (this.#unexchangeable.has(doc) || this.#bytes + doc.length + ENTRY_BYTES > MAX_REFUSED_BYTES) return;
    this.#unexchangeable.add(doc);
    this.#bytes += doc.length + ENTRY_BYTES;
  }

  /** `vector` with the refused feeds counted as held up to the highest seq refused; `vector` itself when that adds nothing. */
  counted(doc: DocName, vector: Vector): Vector {
    const feeds = this.#feeds.get(doc);
    if (!feeds) return vector;
    let out: Record<string, number> | undefined;
    for (const [feed, seq] of feeds) if ((vector[feed] ?? 0) < seq) (out ??= { ...vector })[feed] = seq;
    return out ?? vector;
  }

  /** Forgets everything; the documents it was about. */
  clear(): DocName[] {
    const docs = [...new Set([...this.#feeds.keys(), ...this.#unexchangeable])];
    this.#feeds.clear();
    this.#unexchangeable.clear();
    this.#bytes = 0;
    return docs;
  }

  /** Forgets the feeds these origins wrote; the documents they were refused in. */
  forgetOrigins(origins: ReadonlySet<string>): DocName[] {
    const docs: DocName[] = [];
    for (const [doc, feeds] of this.#feeds) {
      for (const feed of feeds.keys()) {
        if (!origins.has(feedOrigin(feed as FeedKey))) continue;
        feeds.delete(feed);
        this.#bytes -= feed.length + ENTRY_BYTES;
        if (docs.at(-1) !== doc) docs.push(doc);
      }
      if (!feeds.size) {
        this.#feeds.delete(doc);
        this.#bytes -= doc.length + ENTRY_BYTES;
      }
    }
    return docs;
  }

  /** Forgets the documents refused as not exchangeable that `may` now allows; those documents. */
  forgetUnexchangeable(may: (doc: DocName) => boolean): DocName[] {
    const docs = [...this.#unexchangeable].filter(may);
    for (const doc of docs) {
      this.#unexchangeable.delete(doc);
      this.#bytes -= doc.length + ENTRY_BYTES;
    }
    return docs;
  }
}
