import * as Y from 'yjs';
import { postUpdate, type MeshNode } from './mesh-node.js';
import { sleep } from './wait.js';

/**
 * A client of one node writing keys `<prefix>0, <prefix>1, …` into map `m`
 * of a document through POST /updates, one Yjs client, re-sending with the
 * next key what was not acknowledged. For each acknowledged key it keeps the
 * seq of the node's own feed that carries it, so that a cutoff (a seq) says
 * exactly which keys it keeps.
 */
export class KeyWriter {
  readonly node: MeshNode;
  readonly doc: string;
  /** Acknowledged key → seq of the node's own feed (the envelope holding it) and when. */
  readonly acked = new Map<string, { seq: number; at: number }>();
  failures = 0;
  readonly #prefix: string;
  readonly #ydoc = new Y.Doc();
  /** Own-feed seq → this client's clock once it was acknowledged. */
  readonly #clockAt = new Map<number, number>();
  #ackedSv = Y.encodeStateVector(new Y.Doc());
  #unacked: string[] = [];
  #n = 0;
  #loop: Promise<void> | undefined;
  #stopping = false;

  constructor(node: MeshNode, doc: string, prefix: string) {
    this.node = node;
    this.doc = doc;
    this.#prefix = prefix;
  }

  get clientId(): number {
    return this.#ydoc.clientID;
  }

  /** Writes one more key; true once the node acknowledged it (and anything left over). */
  async write(): Promise<boolean> {
    const key = `${this.#prefix}${this.#n++}`;
    this.#ydoc.getMap('m').set(key, this.#n);
    this.#unacked.push(key);
    const { status, vector } = await postUpdate(this.node, this.doc, Y.encodeStateAsUpdate(this.#ydoc, this.#ackedSv));
    if (status !== 200) {
      this.failures++;
      return false;
    }
    const own = Object.entries(vector).filter(([feed]) => feed.startsWith(`${this.node.pair.id}:`));
    const seq = Math.max(0, ...own.map(([, s]) => s));
    for (const k of this.#unacked) this.acked.set(k, { seq, at: performance.now() });
    this.#unacked = [];
    this.#ackedSv = Y.encodeStateVector(this.#ydoc);
    this.#clockAt.set(seq, Y.getState(this.#ydoc.store, this.clientId));
    return true;
  }

  /** Writes `n` keys one after the other. */
  async writeMany(n: number): Promise<void> {
    for (let i = 0; i < n; i++) await this.write();
  }

  /** Writes a key every `everyMs` until `stop()`. */
  start(everyMs: number): void {
    this.#stopping = false;
    this.#loop = (async () => {
      while (!this.#stopping) {
        await this.write();
        await sleep(everyMs);
      }
    })();
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    await this.#loop;
  }

  /** The highest own-feed seq acknowledged so far. */
  get lastSeq(): number {
    return Math.max(0, ...[...this.acked.values()].map((a) => a.seq));
  }

  /** Acknowledged keys carried by envelopes up to `seq` (`within`) or beyond it. */
  keys(seq: number, side: 'within' | 'beyond'): string[] {
    return [...this.acked].filter(([, a]) => (side === 'within' ? a.seq <= seq : a.seq > seq)).map(([k]) => k);
  }

  /** Keys acknowledged between two moments (performance.now()). */
  ackedBetween(from: number, to: number): number {
    return [...this.acked.values()].filter((a) => a.at >= from && a.at <= to).length;
  }

  /** This client's clock covered by the envelopes up to `seq`: no node may hold more of it once `seq` is the cutoff. */
  clockAt(seq: number): number {
    return Math.max(0, ...[...this.#clockAt].filter(([s]) => s <= seq).map(([, c]) => c));
  }
}
