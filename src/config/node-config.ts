import { hostname } from 'node:os';
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../errors.js';
import { parseDuration, DURATION_HINT } from '../util/duration.js';
import { parseHostPort, type HostPort } from '../util/address.js';
import { firstIssue } from './json-path.js';

const duration = z.string().refine((s) => parseDuration(s) !== undefined, { message: `expected ${DURATION_HINT}` });
/** A lifetime, timeout or interval: zero would never connect, or spin. */
const positiveDuration = duration.refine((s) => (parseDuration(s) ?? 0) > 0, { message: 'expected a duration above zero' });
const bytes = z.number().int().positive();
const address = z.string().refine((s) => parseHostPort(s) !== undefined, { message: 'expected "HOST:PORT" ("[::1]:PORT" for IPv6)' });
/** The Fetch standard's "bad ports": browsers, and Node's fetch (which the CLI uses), never connect to them. */
const FETCH_BAD_PORTS = new Set([1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101, 102, 103, 104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179, 389, 427, 465, 512, 513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563, 587, 601, 636, 989, 990, 993, 995, 1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667, 6668, 6669, 6679, 6697, 10080]);
const apiAddress = address.refine((s) => !FETCH_BAD_PORTS.has(parseHostPort(s)?.port ?? 0), { message: 'is a port browsers and fetch refuse to connect to (the Fetch standard\'s "bad ports"): apps and the CLI could not reach the API there; choose another' });
const fileName = z.string().min(1);

/** The defaults of every key in tessera.json; the README lists the same table. */
export const DEFAULTS = {
  listen: '127.0.0.1:7400',
  api: '127.0.0.1:7401',
  peersFile: 'peers.json',
  grantsFile: 'grants.json',
  sessionTtl: '1h',
  clockTolerance: '30s',
  handshakeTimeout: '10s',
  apiTokenMaxTtl: '30d',
  maxPreAuthBytes: 64 * 1024,
  maxFrameBytes: 16 * 1024 * 1024,
  maxUpdateBytes: 8 * 1024 * 1024,
  maxQueuedBytes: 32 * 1024 * 1024,
  maxDocsInMemory: 1000,
  maxPendingBytes: 1024 * 1024,
  maxHeldBytes: 64 * 1024 * 1024,
  durability: 'fsync',
  allowedOrigins: [] as string[],
  maxUnauthenticated: 64,
  maxUnauthenticatedPerAddress: 8,
  handshakesPerMinute: 120,
  heartbeatInterval: '15s',
  reconnectMax: '30s',
  refusedReconnectMax: '1h',
  grantWarning: '7d',
  docIdleTimeout: '5m',
  snapshotEvery: 500,
  maxPeerBytesPerSecond: 64 * 1024 * 1024,
  announceInterval: '5m',
  rateLimitWindow: '30s',
  maxAppConnections: 4096,
} as const;

/** Unless tessera.json says otherwise, one token may hold this share of maxAppConnections. */
const PER_TOKEN_SHARE = 4;

const FileSchema = z.strictObject({
  name: z.string().min(1).max(100).optional(),
  listen: address.optional(),
  api: apiAddress.optional(),
  peersFile: fileName.optional(),
  grantsFile: fileName.optional(),
  sessionTtl: positiveDuration.optional(),
  clockTolerance: duration.optional(),
  handshakeTimeout: positiveDuration.optional(),
  apiTokenMaxTtl: positiveDuration.optional(),
  maxPreAuthBytes: bytes.optional(),
  maxFrameBytes: bytes.optional(),
  maxUpdateBytes: bytes.optional(),
  maxQueuedBytes: bytes.optional(),
  maxDocsInMemory: bytes.optional(),
  maxPendingBytes: bytes.optional(),
  maxHeldBytes: bytes.optional(),
  durability: z.enum(['fsync', 'relaxed']).optional(),
  allowedOrigins: z.array(z.string().min(1)).optional(),
  maxUnauthenticated: bytes.optional(),
  maxUnauthenticatedPerAddress: bytes.optional(),
  handshakesPerMinute: bytes.optional(),
  heartbeatInterval: positiveDuration.optional(),
  reconnectMax: positiveDuration.optional(),
  refusedReconnectMax: positiveDuration.optional(),
  grantWarning: duration.optional(),
  docIdleTimeout: positiveDuration.optional(),
  snapshotEvery: bytes.optional(),
  maxPeerBytesPerSecond: bytes.optional(),
  announceInterval: positiveDuration.optional(),
  rateLimitWindow: positiveDuration.optional(),
  maxAppConnections: bytes.optional(),
  maxAppConnectionsPerToken: bytes.optional(),
});

export type NodeConfigFile = z.infer<typeof FileSchema>;

/** tessera.json resolved: defaults applied, durations in ms, paths absolute. */
export interface NodeConfig {
  readonly file: string;
  readonly dataDir: string;
  readonly name: string;
  readonly listen: HostPort;
  readonly api: HostPort;
  readonly peersFile: string;
  readonly grantsFile: string;
  readonly sessionTtl: number;
  readonly clockTolerance: number;
  readonly handshakeTimeout: number;
  readonly apiTokenMaxTtl: number;
  readonly maxPreAuthBytes: number;
  readonly maxFrameBytes: number;
  readonly maxUpdateBytes: number;
  readonly maxQueuedBytes: number;
  readonly maxDocsInMemory: number;
  readonly maxPendingBytes: number;
  readonly maxHeldBytes: number;
  readonly durability: 'fsync' | 'relaxed';
  readonly allowedOrigins: readonly string[];
  readonly maxUnauthenticated: number;
  readonly maxUnauthenticatedPerAddress: number;
  readonly handshakesPerMinute: number;
  readonly heartbeatInterval: number;
  readonly reconnectMax: number;
  readonly refusedReconnectMax: number;
  readonly grantWarning: number;
  readonly docIdleTimeout: number;
  readonly snapshotEvery: number;
  readonly maxPeerBytesPerSecond: number;
  readonly announceInterval: number;
  readonly rateLimitWindow: number;
  readonly maxAppConnections: number;
  readonly maxAppConnectionsPerToken: number;
}

const MAX_TIMER_MS = 24 * 86_400_000;

/** Validates parsed JSON of tessera.json; throws ConfigError naming file and path. */
export function parseNodeConfig(file: string, dataDir: string, json: unknown): NodeConfig {
  const parsed = FileSchema.safeParse(json);
  if (!parsed.success) {
    const { path, problem } = firstIssue(parsed.error);
    throw new ConfigError(file, path, problem);
  }
  const c = parsed.data;
  const dir = dirname(file);
  const ms = (v: string | undefined, d: string) => parseDuration(v ?? d)!;
  const maxAppConnections = c.maxAppConnections ?? DEFAULTS.maxAppConnections;
  const config: NodeConfig = {
    file,
    dataDir,
    name: c.name ?? hostname(),
    listen: parseHostPort(c.listen ?? DEFAULTS.listen)!,
    api: parseHostPort(c.api ?? DEFAULTS.api)!,
    peersFile: resolve(dir, c.peersFile ?? DEFAULTS.peersFile),
    grantsFile: resolve(dir, c.grantsFile ?? DEFAULTS.grantsFile),
    sessionTtl: ms(c.sessionTtl, DEFAULTS.sessionTtl),
    clockTolerance: ms(c.clockTolerance, DEFAULTS.clockTolerance),
    handshakeTimeout: ms(c.handshakeTimeout, DEFAULTS.handshakeTimeout),
    apiTokenMaxTtl: ms(c.apiTokenMaxTtl, DEFAULTS.apiTokenMaxTtl),
    maxPreAuthBytes: c.maxPreAuthBytes ?? DEFAULTS.maxPreAuthBytes,
    maxFrameBytes: c.maxFrameBytes ?? DEFAULTS.maxFrameBytes,
    maxUpdateBytes: c.maxUpdateBytes ?? DEFAULTS.maxUpdateBytes,
    maxQueuedBytes: c.maxQueuedBytes ?? DEFAULTS.maxQueuedBytes,
    maxDocsInMemory: c.maxDocsInMemory ?? DEFAULTS.maxDocsInMemory,
    maxPendingBytes: c.maxPendingBytes ?? DEFAULTS.maxPendingBytes,
    maxHeldBytes: c.maxHeldBytes ?? DEFAULTS.maxHeldBytes,
    durability: c.durability ?? DEFAULTS.durability,
    allowedOrigins: c.allowedOrigins ?? DEFAULTS.allowedOrigins,
    maxUnauthenticated: c.maxUnauthenticated ?? DEFAULTS.maxUnauthenticated,
    maxUnauthenticatedPerAddress: c.maxUnauthenticatedPerAddress ?? DEFAULTS.maxUnauthenticatedPerAddress,
    handshakesPerMinute: c.handshakesPerMinute ?? DEFAULTS.handshakesPerMinute,
    heartbeatInterval: ms(c.heartbeatInterval, DEFAULTS.heartbeatInterval),
    reconnectMax: ms(c.reconnectMax, DEFAULTS.reconnectMax),
    refusedReconnectMax: ms(c.refusedReconnectMax, DEFAULTS.refusedReconnectMax),
    grantWarning: ms(c.grantWarning, DEFAULTS.grantWarning),
    docIdleTimeout: ms(c.docIdleTimeout, DEFAULTS.docIdleTimeout),
    snapshotEvery: c.snapshotEvery ?? DEFAULTS.snapshotEvery,
    maxPeerBytesPerSecond: c.maxPeerBytesPerSecond ?? DEFAULTS.maxPeerBytesPerSecond,
    announceInterval: ms(c.announceInterval, DEFAULTS.announceInterval),
    rateLimitWindow: ms(c.rateLimitWindow, DEFAULTS.rateLimitWindow),
    maxAppConnections,
    maxAppConnectionsPerToken: c.maxAppConnectionsPerToken ?? Math.max(1, Math.floor(maxAppConnections / PER_TOKEN_SHARE)),
  };
  // Timers cannot wait longer than 2^31-1 ms (about 24.8 days).
  for (const key of ['sessionTtl', 'handshakeTimeout', 'heartbeatInterval', 'reconnectMax', 'refusedReconnectMax', 'docIdleTimeout', 'announceInterval', 'rateLimitWindow'] as const) {
    if (config[key] > MAX_TIMER_MS) throw new ConfigError(file, `$.${key}`, 'must be at most "24d"');
  }
  if (config.maxFrameBytes < config.maxUpdateBytes + 64 * 1024) {
    throw new ConfigError(file, '$.maxFrameBytes', 'must exceed maxUpdateBytes by at least 65536 (an envelope carries its token beside the update)');
  }
  if (config.maxAppConnectionsPerToken > config.maxAppConnections) {
    throw new ConfigError(file, '$.maxAppConnectionsPerToken', `must be at most maxAppConnections (${config.maxAppConnections})`);
  }
  return config;
}

/** Reads tessera.json from a data directory; a missing file means all defaults. */
export async function loadNodeConfig(dataDir: string): Promise<NodeConfig> {
  const file = resolve(dataDir, 'tessera.json');
  let text: string | undefined;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new ConfigError(file, '$', `cannot read: ${(err as NodeJS.ErrnoException).code}`);
  }
  return parseNodeConfig(file, resolve(dataDir), text === undefined ? {} : parseJson(file, text));
}

/**
 * Parses a config file's text. A leading byte order mark (some editors save
 * UTF-8 with one) is skipped; a syntax error says where, by line and column.
 */
export function parseJson(file: string, text: string): unknown {
  const body = text.startsWith('\uFEFF') ? text.slice(1) : text;
  try {
    return JSON.parse(body);
  } catch (err) {
    const message = (err as Error).message;
    const at = /at position (\d+)/.exec(message);
    const where = at ? ` at ${lineColumn(body, Number(at[1]))}` : '';
    throw new ConfigError(file, '$', `not valid JSON${where} (${message})`);
  }
}

function lineColumn(text: string, position: number): string {
  const before = text.slice(0, position);
  const line = before.split('\n').length;
  return `line ${line}, column ${position - before.lastIndexOf('\n')}`;
}
