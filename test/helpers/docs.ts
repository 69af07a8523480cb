import { expect } from 'vitest';
import * as Y from 'yjs';
import type { TestNode } from './cluster.js';
import { waitUntil } from './wait.js';

/** POSTs a Yjs update to a node's API; returns the status and JSON body. */
export async function postUpdate(node: TestNode, doc: string, update: Uint8Array, token?: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${node.api}/v1/docs/${encodeURIComponent(doc)}/updates`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token ?? (await node.token())}`, 'content-type': 'application/octet-stream' },
    body: update,
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

export async function getDoc(node: TestNode, doc: string, token?: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${node.api}/v1/docs/${encodeURIComponent(doc)}`, { headers: { authorization: `Bearer ${token ?? (await node.token())}` } });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

export async function getState(node: TestNode, doc: string): Promise<Uint8Array> {
  const res = await fetch(`${node.api}/v1/docs/${encodeURIComponent(doc)}/state`, { headers: { authorization: `Bearer ${await node.token()}` } });
  if (res.status !== 200) throw new Error(`state: ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}

/** A local Y.Doc standing in for an app; `edit` returns the update its change produced. */
export function appDoc(clientID?: number) {
  const doc = new Y.Doc({ gc: true });
  if (clientID !== undefined) doc.clientID = clientID;
  return {
    doc,
    edit(fn: (d: Y.Doc) => void): Uint8Array {
      let out: Uint8Array | undefined;
      const handler = (u: Uint8Array) => (out = out ? Y.mergeUpdates([out, u]) : u);
      doc.on('update', handler);
      doc.transact(() => fn(doc));
      doc.off('update', handler);
      return out ?? Y.encodeStateAsUpdate(new Y.Doc());
    },
  };
}

/** A node's copy of a document as JSON, read in this process or through a child process's API. */
export interface DocReader {
  get(doc: string): Promise<Record<string, unknown> | undefined>;
}

export const inProcess = (node: TestNode): DocReader => ({ get: async (doc: string) => (await getDoc(node, doc)).body });

/** Writes `key` on `from` and waits until `to` shows it: replication works between them. */
export async function crosses(from: TestNode, to: DocReader, doc: string, key: string): Promise<void> {
  const app = appDoc();
  const res = await postUpdate(from, doc, app.edit((d) => d.getMap('m').set(key, 'honest')));
  expect(res.status).toBe(200);
  await waitUntil(async () => ((await to.get(doc))?.m as Record<string, unknown> | undefined)?.[key] === 'honest', { what: `${key} crosses to the node`, timeoutMs: 20_000 });
}
