#!/usr/bin/env node
import { stat } from 'node:fs/promises';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { Daemon } from './daemon.js';
import { createLogger } from './log.js';
import { resolveDataDir } from './init.js';
import { TesseraError, UsageError, exitCodeFor, isFileError } from './errors.js';
import { idCommand, initCommand, tokenCommand } from './commands/node.js';
import { statusCommand } from './commands/status.js';
import { peersAddCommand, peersRemoveCommand, peersRevokeCommand } from './commands/peers.js';
import { authorityInitCommand, grantCommand, revokeCommand } from './commands/authority.js';
import { docGetCommand, docListCommand, verifyCommand } from './commands/docs.js';

const HELP = `tessera: peer-to-peer replication of Yjs documents, signed and encrypted

Usage: tessera <command> [options]

  init   [--data DIR] [--name NAME] [--listen H:P] [--api H:P]   create identity and config
  id     [--data DIR] [--json]                                  print the node id (or a peers-file entry)
  start  [--data DIR]                                           run the daemon
  token  [--data DIR] --scope SCOPE... [--ttl DURATION]         print a local API token
  status [--data DIR] [--json]                                  status of the running node
  doc list [--data DIR]                                         documents of the running node
  doc get NAME [--data DIR]                                     a document as JSON
  verify [--data DIR] [--json]                                  re-check every stored envelope (exit 1 if anything is wrong)
  peers add --entry FILE [--name N] [--url U] [--read GLOB...] [--write GLOB...]
  peers remove NAME|ID
  peers revoke NAME|ID                                          revoke a peer, keeping what this node holds (prints the cutoff)
  authority init --out FILE [--name NAME]                       a new authority key; prints its "authorities" entry
  grant --authority FILE --node ID_FILE --read GLOB... --write GLOB... --ttl DURATION
  revoke --authority FILE --node ID [--cutoff FILE]             an authority revocation of a node

DIR defaults to $TESSERA_HOME, else ./.tessera.`;

const data = { data: { type: 'string' } } as const;

/**
 * Parses flags strictly; anything unknown is a usage error (exit 2), and so
 * is a flag that takes one value given twice (which one was meant?).
 */
function flags<T extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: T, positionals = 0) {
  try {
    const parsed = parseArgs({ args, options, strict: true, allowPositionals: positionals > 0, tokens: true });
    if (parsed.positionals.length > positionals) throw new UsageError(`unexpected argument ${JSON.stringify(parsed.positionals[positionals])}`);
    const seen = new Set<string>();
    for (const t of parsed.tokens) {
      if (t.kind !== 'option' || options[t.name]?.multiple) continue;
      if (seen.has(t.name)) throw new UsageError(`--${t.name} is given more than once`);
      seen.add(t.name);
    }
    return parsed;
  } catch (err) {
    if (err instanceof UsageError) throw err;
    // node's parseArgs explains some errors over several lines; a usage error is one line.
    throw new UsageError((err as Error).message.replace(/\s*\n\s*/g, ' '));
  }
}

/** The data directory of `--data` (else $TESSERA_HOME, else ./.tessera): missing is for the command to judge, not a folder is a usage error. */
async function dataDir(flag: string | undefined): Promise<string> {
  const dir = resolveDataDir(flag);
  const kind = await stat(dir).then((s) => (s.isDirectory() ? 'folder' : 'other'), (err: NodeJS.ErrnoException) => err.code);
  if (kind === 'other' || kind === 'ENOTDIR') throw new UsageError(`data directory ${dir} is not a folder`);
  return dir;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const out = (text: string) => process.stdout.write(text + '\n');
  switch (command) {
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      out(HELP);
      return 0;
    case 'init': {
      const { values } = flags(rest, { ...data, name: { type: 'string' }, listen: { type: 'string' }, api: { type: 'string' } });
      out(await initCommand(await dataDir(values.data), { ...pick(values, 'name', 'listen', 'api') }));
      return 0;
    }
    case 'id': {
      const { values } = flags(rest, { ...data, json: { type: 'boolean' } });
      out(await idCommand(await dataDir(values.data), values.json ?? false));
      return 0;
    }
    case 'token': {
      const { values } = flags(rest, { ...data, scope: { type: 'string', multiple: true }, ttl: { type: 'string' } });
      out(await tokenCommand(await dataDir(values.data), { scopes: values.scope ?? [], ...pick(values, 'ttl') }));
      return 0;
    }
    case 'status': {
      const { values } = flags(rest, { ...data, json: { type: 'boolean' } });
      out(await statusCommand(await dataDir(values.data), values.json ?? false));
      return 0;
    }
    case 'peers':
      return peers(rest, out);
    case 'doc': {
      const [sub, ...more] = rest;
      if (sub === 'list') {
        const { values } = flags(more, data);
        const names = await docListCommand(await dataDir(values.data));
        if (names) out(names);
        return 0;
      }
      if (sub === 'get') {
        const { values, positionals } = flags(more, data, 1);
        if (!positionals[0]) throw new UsageError('doc get needs NAME');
        out(await docGetCommand(await dataDir(values.data), positionals[0]));
        return 0;
      }
      throw new UsageError('expected "doc list" or "doc get NAME"');
    }
    case 'authority': {
      const [sub, ...more] = rest;
      if (sub !== 'init') throw new UsageError('expected "authority init --out FILE"');
      const { values } = flags(more, { out: { type: 'string' }, name: { type: 'string' } });
      if (!values.out) throw new UsageError('authority init needs --out FILE');
      out(await authorityInitCommand(values.out, values.name ?? 'authority'));
      return 0;
    }
    case 'grant': {
      const { values } = flags(rest, { authority: { type: 'string' }, node: { type: 'string' }, read: { type: 'string', multiple: true }, write: { type: 'string', multiple: true }, ttl: { type: 'string' } });
      if (!values.authority || !values.node || !values.ttl) throw new UsageError('grant needs --authority FILE --node ID_FILE --ttl DURATION');
      out(await grantCommand({ authority: values.authority, node: values.node, read: values.read ?? [], write: values.write ?? [], ttl: values.ttl }));
      return 0;
    }
    case 'revoke': {
      const { values } = flags(rest, { authority: { type: 'string' }, node: { type: 'string' }, cutoff: { type: 'string' } });
      if (!values.authority || !values.node) throw new UsageError('revoke needs --authority FILE --node ID');
      out(await revokeCommand({ authority: values.authority, node: values.node, ...pick(values, 'cutoff') }));
      return 0;
    }
    case 'verify': {
      const { values } = flags(rest, { ...data, json: { type: 'boolean' } });
      const { text, ok } = await verifyCommand(await dataDir(values.data), values.json ?? false);
      out(text);
      return ok ? 0 : 1;
    }
    case 'start': {
      const { values } = flags(rest, data);
      return start(await dataDir(values.data));
    }
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)}; see tessera --help`);
  }
}

async function peers(args: string[], out: (text: string) => void): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'add') {
    const { values } = flags(rest, { ...data, entry: { type: 'string' }, name: { type: 'string' }, url: { type: 'string' }, read: { type: 'string', multiple: true }, write: { type: 'string', multiple: true } });
    if (!values.entry) throw new UsageError('peers add needs --entry FILE (what "tessera id --json" printed)');
    out(await peersAddCommand(await dataDir(values.data), { entry: values.entry, ...pick(values, 'name', 'url'), read: values.read ?? [], write: values.write ?? [] }));
    return 0;
  }
  if (sub === 'remove') {
    const { values, positionals } = flags(rest, data, 1);
    if (!positionals[0]) throw new UsageError('peers remove needs NAME or ID');
    out(await peersRemoveCommand(await dataDir(values.data), positionals[0]));
    return 0;
  }
  if (sub === 'revoke') {
    const { values, positionals } = flags(rest, data, 1);
    if (!positionals[0]) throw new UsageError('peers revoke needs NAME or ID');
    out(await peersRevokeCommand(await dataDir(values.data), positionals[0]));
    return 0;
  }
  throw new UsageError(`unknown peers command ${JSON.stringify(sub ?? '')}; expected add, remove or revoke`);
}

function pick<T extends Record<string, unknown>, K extends keyof T>(values: T, ...keys: K[]): { [P in K]?: Exclude<T[P], undefined> } {
  const out: Record<string, unknown> = {};
  for (const k of keys) if (values[k] !== undefined) out[k as string] = values[k];
  return out as { [P in K]?: Exclude<T[P], undefined> };
}

/**
 * Runs the daemon until SIGTERM or SIGINT; SIGHUP reloads the peers and
 * grants files. The handlers are in place before the daemon starts, so a
 * signal during start-up (which reads a large store for a while) is not
 * Node's default of dying: a stop asked for then comes once the daemon is
 * up, a reload asked for then reads the files again. A second stop signal
 * while stopping changes nothing.
 */
async function start(dataDir: string): Promise<number> {
  const log = createLogger();
  let daemon: Daemon | undefined;
  let reloadWhenUp = false;
  let stopRequested!: () => void;
  const stopSignal = new Promise<void>((resolve) => (stopRequested = resolve));
  const onStop = (signal: NodeJS.Signals) => {
    log.info({ signal }, daemon ? 'stopping' : 'stopping once started');
    stopRequested();
  };
  process.on('SIGTERM', onStop);
  process.on('SIGINT', onStop);
  process.on('SIGHUP', () => {
    if (daemon) void daemon.reload();
    else reloadWhenUp = true;
  });
  daemon = await Daemon.start({ dataDir, log });
  if (reloadWhenUp) void daemon.reload();
  await stopSignal;
  await daemon.stop();
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    const message = err instanceof TesseraError || isFileError(err) ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err);
    process.stderr.write(`tessera: ${message}\n`);
    process.exit(exitCodeFor(err));
  },
);
