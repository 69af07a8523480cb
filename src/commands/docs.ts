import { join } from 'node:path';
import { clientFor, findDaemon } from './running.js';
import { readKeyFile } from '../identity/file.js';
import { IDENTITY_FILE, STORE_DIR } from '../init.js';
import { loadNodeConfig } from '../config/node-config.js';
import { loadPeers } from '../config/peers.js';
import { Store } from '../store/store.js';
import { verifyStore, formatReport, type VerifyReport } from '../sync/verify.js';
import { createLogger } from '../log.js';
import { UsageError } from '../errors.js';
import { docNameProblem } from '../config/names.js';

export async function docListCommand(dataDir: string): Promise<string> {
  const docs = await (await clientFor(dataDir)).list();
  return docs.map((d) => d.name).join('\n');
}

export async function docGetCommand(dataDir: string, name: string): Promise<string> {
  const problem = docNameProblem(name);
  if (problem) throw new UsageError(problem);
  return JSON.stringify(await (await clientFor(dataDir)).get(name), null, 2);
}

/**
 * `tessera verify`: through the running node if there is one (the store is
 * open there), offline otherwise. Resolves with the text and whether it passed.
 */
export async function verifyCommand(dataDir: string, asJson: boolean): Promise<{ text: string; ok: boolean }> {
  let report: VerifyReport;
  if (await findDaemon(dataDir)) {
    report = (await (await clientFor(dataDir)).verify()) as VerifyReport;
  } else {
    const identity = await readKeyFile(join(dataDir, IDENTITY_FILE));
    const config = await loadNodeConfig(dataDir);
    const peers = await loadPeers(config.peersFile, identity.id);
    const keys = new Map(peers.peers.map((p) => [p.id as string, p.publicKey]));
    keys.set(identity.id, identity.publicJwk);
    const store = await Store.open(join(dataDir, STORE_DIR), { durability: config.durability, log: createLogger({ level: 'silent' }) });
    try {
      report = await verifyStore(store, (origin) => keys.get(origin));
    } finally {
      await store.close();
    }
  }
  return { text: asJson ? JSON.stringify(report, null, 2) : formatReport(report), ok: report.ok };
}
