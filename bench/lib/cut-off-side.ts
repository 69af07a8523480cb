import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../src/util/files.js';
import { editPeersFile, tessera, tryJson, watchCodes, type CodeLine, type MeshNode } from './mesh-node.js';
import { Link } from './proxy.js';
import { startNode, createNodeDir } from './tessera.js';
import { until } from './wait.js';

/**
 * The part of a soak mesh that a partition cuts off: D (listed in every
 * peers file), G (listed nowhere, admitted by an authority's grant) and E
 * (an honest node on their side), all three limited to one document glob.
 * Every link from them to the mesh nodes (A, B, C) runs through a Link in
 * front of that node, so cutting the Links partitions {D, E, G} from
 * {A, B, C}; D and G dial E directly.
 */
export interface CutOffSide {
  readonly d: MeshNode;
  readonly e: MeshNode;
  readonly g: MeshNode;
  /** One in front of each mesh node's peer port. */
  readonly links: readonly Link[];
  /** The authority key file (`tessera authority init`) whose grant admits G. */
  readonly authorityFile: string;
  /** Close codes in D's and G's logs (sessions closed, dials refused). */
  readonly codes: ReadonlyMap<MeshNode, CodeLine[]>;
  stop(): Promise<void>;
}

const entry = (n: MeshNode, glob: string, url?: string) => ({ name: n.name, id: n.pair.id, publicKey: n.pair.publicJwk, ...(url ? { url } : {}), read: [glob], write: [glob] });

/** Starts D, E and G under `root` with `config`, links them to `mesh` and waits until they are connected. */
export async function startCutOffSide(root: string, mesh: readonly MeshNode[], config: Record<string, unknown>, glob: string): Promise<CutOffSide> {
  const [d, e, g] = await Promise.all(['D', 'E', 'G'].map(async (name): Promise<MeshNode> => {
    const { dir, pair } = await createNodeDir(root, name, config);
    return { name, dir, pair, current: await startNode(dir, name), up: true };
  })) as [MeshNode, MeshNode, MeshNode];
  const links = await Promise.all(mesh.map((n) => Link.open(Number(n.current.peerUrl.split(':').pop()), n.honestHost)));
  const side: CutOffSide = {
    d, e, g, links,
    authorityFile: join(root, 'authority.json'),
    codes: new Map([d, g].map((n) => [n, watchCodes(n)])),
    stop: async () => {
      await Promise.all([d, e, g].map((n) => n.current.server.stop()));
      await Promise.all(links.map((l) => l.close()));
    },
  };
  try {
    const admin = JSON.parse(await tessera(['authority', 'init', '--out', side.authorityFile, '--name', 'soak-admin'])) as unknown;
    await grantTo(g, side.authorityFile, glob);
    const viaLinks = mesh.map((n, i) => entry(n, glob, links[i]!.url));
    // Listeners before diallers, so that no early dial is refused as unknown.
    for (const n of mesh) await editPeersFile(n, (f) => {
      f.peers.push(entry(d, glob), entry(e, glob));
      f.authorities.push(admin);
    });
    await editPeersFile(e, (f) => Object.assign(f, { peers: [...viaLinks, entry(d, glob)], authorities: [admin] }));
    await editPeersFile(d, (f) => Object.assign(f, { peers: [...viaLinks, entry(e, glob, e.current.peerUrl)], authorities: [admin] }));
    // G lists D too: E relays D's envelopes to it.
    await editPeersFile(g, (f) => Object.assign(f, { peers: [...viaLinks, entry(e, glob, e.current.peerUrl), entry(d, glob)], authorities: [admin] }));
    await connected(e, mesh);
    await connected(d, [mesh[0]!, e]);
    await connected(g, [mesh[0]!, e]);
    return side;
  } catch (err) {
    await side.stop();
    throw err;
  }
}

/** A grant for `node` from the authority (`tessera id --json`, then `tessera grant`), in its grants file. */
async function grantTo(node: MeshNode, authorityFile: string, glob: string): Promise<void> {
  const idFile = join(node.dir, '..', `${node.name}.id.json`);
  await writeFile(idFile, await tessera(['id', '--json', '--data', node.dir]));
  const grant = await tessera(['grant', '--authority', authorityFile, '--node', idFile, '--read', glob, '--write', glob, '--ttl', '1h']);
  await writeFileAtomic(join(node.dir, 'grants.json'), JSON.stringify({ grants: [grant], revocations: [] }));
}

/** Waits until `node` lists every one of `others` as connected. */
export async function connected(node: MeshNode, others: readonly MeshNode[], timeoutMs = 60_000): Promise<void> {
  await until(`${node.name} connected to ${others.map((o) => o.name).join(', ')}`, async () => {
    const s = await tryJson<{ peers: { id: string; state: string }[] }>(node, '/v1/status');
    return others.every((o) => s?.peers.some((p) => p.id === o.pair.id && p.state === 'connected')) || undefined;
  }, { timeoutMs, intervalMs: 200 });
}
