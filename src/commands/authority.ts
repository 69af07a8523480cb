import { readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { createKeyFile, readKeyFile } from '../identity/file.js';
import { thumbprint } from '../identity/keys.js';
import { UsageError } from '../errors.js';
import { parseJson } from '../config/node-config.js';
import { globProblem } from '../config/glob.js';
import { EntryName, RevokedSchema, type Cutoff } from '../config/peers.js';
import { issueGrant } from '../tokens/grant.js';
import { issueRevocation } from '../tokens/revocation.js';
import { parseDuration, DURATION_HINT } from '../util/duration.js';
import { type NodeId, type PublicJwk, B64U_32 } from '../types.js';

/** `tessera authority init`: a new authority key (mode 0600); prints its `authorities` entry. */
export async function authorityInitCommand(out: string, name: string): Promise<string> {
  // The peers file's rule for an authority's name: an entry it would refuse is no ready-to-paste entry.
  if (!EntryName.safeParse(name).success) throw new UsageError('--name expects 1 to 100 characters');
  const folder = await stat(dirname(out)).catch(() => undefined);
  if (!folder?.isDirectory()) throw new UsageError(`--out ${out}: the folder ${dirname(out)} does not exist`);
  const pair = await createKeyFile(out);
  return JSON.stringify({ name, id: pair.id, publicKey: pair.publicJwk });
}

/** `tessera grant`: a grant for the node whose `tessera id --json` is in `nodeFile`. */
export async function grantCommand(opts: { authority: string; node: string; read: string[]; write: string[]; ttl: string }): Promise<string> {
  for (const g of [...opts.read, ...opts.write]) {
    const problem = globProblem(g);
    if (problem) throw new UsageError(`invalid glob ${JSON.stringify(g)}: ${problem}`);
  }
  const ttlMs = parseDuration(opts.ttl);
  if (!ttlMs) throw new UsageError(`--ttl expects ${DURATION_HINT}`);
  // A grant whose exp is past the last date a node can represent stops it from starting.
  if (Number.isNaN(new Date(Date.now() + ttlMs + 1000).getTime())) throw new UsageError(`--ttl ${opts.ttl} is too long: the grant would expire after the last date a node can represent`);
  const node = await readNodeEntry(opts.node);
  const authority = await readKeyFile(opts.authority);
  return issueGrant(authority, node, { read: opts.read, write: opts.write, ttlMs });
}

/** `tessera revoke`: a revocation of node `id`, keeping what the cutoff file says (default: nothing). */
export async function revokeCommand(opts: { authority: string; node: string; cutoff?: string }): Promise<string> {
  if (!B64U_32.test(opts.node)) throw new UsageError('--node expects a node id');
  let cutoff: Cutoff = { '*': {} };
  if (opts.cutoff) {
    const raw = parseJson(opts.cutoff, await readText(opts.cutoff, '--cutoff'));
    const parsed = RevokedSchema.shape.cutoff.safeParse(raw);
    if (!parsed.success) throw new UsageError(`--cutoff ${opts.cutoff}: not a cutoff (${parsed.error.issues[0]!.message})`);
    cutoff = parsed.data;
  }
  const authority = await readKeyFile(opts.authority);
  return issueRevocation(authority, opts.node as NodeId, cutoff);
}

async function readNodeEntry(file: string): Promise<{ id: NodeId; publicKey: PublicJwk }> {
  const v = parseJson(file, await readText(file, '--node')) as { id?: unknown; publicKey?: { x?: unknown } };
  const x = v.publicKey?.x;
  if (typeof v.id !== 'string' || typeof x !== 'string' || !B64U_32.test(x)) throw new UsageError(`--node ${file}: expected what "tessera id --json" prints`);
  const publicKey: PublicJwk = { kty: 'OKP', crv: 'Ed25519', x };
  if (thumbprint(publicKey) !== v.id) throw new UsageError(`--node ${file}: id is not the thumbprint of publicKey`);
  return { id: v.id as NodeId, publicKey };
}

async function readText(file: string, flag: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw new UsageError(`${flag} ${file}: cannot read (${(err as NodeJS.ErrnoException).code})`);
  }
}
