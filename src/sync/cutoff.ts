import type { Cutoff } from '../config/peers.js';
import type { NodeId } from '../types.js';
import { listDocs, type Vector } from '../store/records.js';
import type { Store } from '../store/store.js';
import { docHash } from '../trust/trust.js';

/**
 * The cutoff `tessera peers revoke` writes: for every document holding
 * envelopes of `node`, each of its feeds up to what this node holds. A node
 * that wrote nothing here is cut off entirely (`"*": {}`).
 */
export async function cutoffFromStore(store: Store, node: NodeId): Promise<Cutoff> {
  const cutoff: Record<string, Vector> = {};
  for await (const { doc, vector } of listDocs(store)) {
    const feeds = Object.entries(vector).filter(([feed]) => feed.startsWith(`${node}:`));
    if (feeds.length) cutoff[docHash(doc)] = Object.fromEntries(feeds);
  }
  return Object.keys(cutoff).length ? cutoff : { '*': {} };
}
