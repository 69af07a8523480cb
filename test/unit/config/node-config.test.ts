import { describe, expect, it } from 'vitest';
import { hostname } from 'node:os';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { DEFAULTS, loadNodeConfig, parseNodeConfig } from '../../../src/config/node-config.js';
import { ConfigError } from '../../../src/errors.js';
import { tempDir } from '../../helpers/node.js';

const FILE = '/srv/tessera/node/tessera.json';
const DIR = '/srv/tessera/node';

function parse(json: unknown) {
  return parseNodeConfig(FILE, DIR, json);
}

/** The ConfigError parse throws, checked to name the file and `jsonPath`. */
function refused(json: unknown, jsonPath: string, file = FILE): ConfigError {
  let caught: unknown;
  try {
    parseNodeConfig(file, DIR, json);
  } catch (err) {
    caught = err;
  }
  expect(caught, `expected ${JSON.stringify(json)} to be refused`).toBeInstanceOf(ConfigError);
  const err = caught as ConfigError;
  expect(err.code).toBe('ERR_CONFIG');
  expect(err.file).toBe(file);
  expect(err.path).toBe(jsonPath);
  expect(err.message.startsWith(`${file}: ${jsonPath}: `)).toBe(true);
  expect(err.message).not.toContain('\n');
  return err;
}

describe('tessera.json defaults', () => {
  it('an empty object gives every documented default', () => {
    const c = parse({});
    expect(c).toEqual({
      file: FILE,
      dataDir: DIR,
      name: hostname(),
      listen: { host: '127.0.0.1', port: 7400 },
      api: { host: '127.0.0.1', port: 7401 },
      peersFile: join(DIR, 'peers.json'),
      grantsFile: join(DIR, 'grants.json'),
      sessionTtl: 3_600_000,
      clockTolerance: 30_000,
      handshakeTimeout: 10_000,
      apiTokenMaxTtl: 30 * 86_400_000,
      maxPreAuthBytes: 64 * 1024,
      maxFrameBytes: 16 * 1024 * 1024,
      maxUpdateBytes: 8 * 1024 * 1024,
      maxQueuedBytes: 32 * 1024 * 1024,
      maxDocsInMemory: 1000,
      maxPendingBytes: 1024 * 1024,
      maxHeldBytes: 64 * 1024 * 1024,
      durability: 'fsync',
      allowedOrigins: [],
      maxUnauthenticated: 64,
      maxUnauthenticatedPerAddress: 8,
      handshakesPerMinute: 120,
      heartbeatInterval: 15_000,
      reconnectMax: 30_000,
      refusedReconnectMax: 3_600_000,
      grantWarning: 7 * 86_400_000,
      docIdleTimeout: 300_000,
      snapshotEvery: 500,
      maxPeerBytesPerSecond: 64 * 1024 * 1024,
      announceInterval: 300_000,
      rateLimitWindow: 30_000,
      maxAppConnections: 4096,
      maxAppConnectionsPerToken: 1024,
    });
  });

  it('the DESIGN.md §2 defaults are the exported ones', () => {
    expect(DEFAULTS).toMatchObject({ listen: '127.0.0.1:7400', api: '127.0.0.1:7401', peersFile: 'peers.json', grantsFile: 'grants.json', durability: 'fsync', sessionTtl: '1h' });
  });

  it('a missing tessera.json means all defaults, with the file path still resolved', async () => {
    const dir = await tempDir();
    const c = await loadNodeConfig(dir);
    expect(c.file).toBe(join(dir, 'tessera.json'));
    expect(c.dataDir).toBe(dir);
    expect(c.listen).toEqual({ host: '127.0.0.1', port: 7400 });
    expect(c.peersFile).toBe(join(dir, 'peers.json'));
  });
});

describe('tessera.json keys', () => {
  it('takes every key, converting durations to ms and resolving paths', () => {
    const c = parse({
      name: 'berlin',
      listen: '0.0.0.0:0',
      api: '[::1]:9000',
      peersFile: 'conf/peers.json',
      grantsFile: '/etc/tessera/grants.json',
      sessionTtl: '2h',
      clockTolerance: '5s',
      handshakeTimeout: '500ms',
      apiTokenMaxTtl: '1d',
      maxPreAuthBytes: 1024,
      maxFrameBytes: 2 * 1024 * 1024,
      maxUpdateBytes: 1024 * 1024,
      maxQueuedBytes: 4096,
      maxDocsInMemory: 7,
      maxPendingBytes: 2048,
      maxHeldBytes: 4096,
      durability: 'relaxed',
      allowedOrigins: ['http://localhost:3000', 'https://app.example'],
      maxUnauthenticated: 3,
      maxUnauthenticatedPerAddress: 2,
      handshakesPerMinute: 9,
      heartbeatInterval: '1m',
      reconnectMax: '45s',
      refusedReconnectMax: '2h',
      grantWarning: '3d',
      docIdleTimeout: '10m',
      snapshotEvery: 50,
      maxPeerBytesPerSecond: 2048,
      announceInterval: '1m',
      rateLimitWindow: '10s',
      maxAppConnections: 10,
      maxAppConnectionsPerToken: 3,
    });
    expect(c).toEqual({
      file: FILE,
      dataDir: DIR,
      name: 'berlin',
      listen: { host: '0.0.0.0', port: 0 },
      api: { host: '::1', port: 9000 },
      peersFile: resolve(DIR, 'conf/peers.json'),
      grantsFile: '/etc/tessera/grants.json',
      sessionTtl: 7_200_000,
      clockTolerance: 5_000,
      handshakeTimeout: 500,
      apiTokenMaxTtl: 86_400_000,
      maxPreAuthBytes: 1024,
      maxFrameBytes: 2 * 1024 * 1024,
      maxUpdateBytes: 1024 * 1024,
      maxQueuedBytes: 4096,
      maxDocsInMemory: 7,
      maxPendingBytes: 2048,
      maxHeldBytes: 4096,
      durability: 'relaxed',
      allowedOrigins: ['http://localhost:3000', 'https://app.example'],
      maxUnauthenticated: 3,
      maxUnauthenticatedPerAddress: 2,
      handshakesPerMinute: 9,
      heartbeatInterval: 60_000,
      reconnectMax: 45_000,
      refusedReconnectMax: 7_200_000,
      grantWarning: 3 * 86_400_000,
      docIdleTimeout: 600_000,
      snapshotEvery: 50,
      maxPeerBytesPerSecond: 2048,
      announceInterval: 60_000,
      rateLimitWindow: 10_000,
      maxAppConnections: 10,
      maxAppConnectionsPerToken: 3,
    });
  });

  it('peersFile and grantsFile are relative to tessera.json, not to the working directory', async () => {
    const dir = await tempDir();
    await mkdir(join(dir, 'conf'));
    await writeFile(join(dir, 'tessera.json'), JSON.stringify({ peersFile: 'conf/p.json', grantsFile: '../g.json' }));
    const c = await loadNodeConfig(dir);
    expect(c.peersFile).toBe(join(dir, 'conf', 'p.json'));
    expect(c.grantsFile).toBe(resolve(dir, '..', 'g.json'));
  });

  it('accepts port 0 and IPv6 and host names', () => {
    expect(parse({ listen: '127.0.0.1:0' }).listen).toEqual({ host: '127.0.0.1', port: 0 });
    expect(parse({ listen: 'localhost:65535' }).listen).toEqual({ host: 'localhost', port: 65535 });
    expect(parse({ api: '[::]:7401' }).api).toEqual({ host: '::', port: 7401 });
  });
});

describe('tessera.json refusals name the file and the JSON path', () => {
  it('an unknown key, naming it', () => {
    const err = refused({ listen: '127.0.0.1:0', bogus: 1 }, '$.bogus');
    expect(err.message).toContain('"bogus"');
    expect(err.message).toMatch(/unknown key/);
  });

  it('several unknown keys, naming all of them', () => {
    const err = refused({ foo: 1, bar: 2 }, '$.foo');
    expect(err.message).toContain('"foo"');
    expect(err.message).toContain('"bar"');
  });

  it('a misspelt tuning key (case matters)', () => {
    refused({ SessionTtl: '1h' }, '$.SessionTtl');
    refused({ session_ttl: '1h' }, '$.session_ttl');
  });

  it.each(['30', '1.5h', '-1s', '30 s', '1w', '1H', 's', '', ' 30s', '30s ', '9007199254740991d', '99999999999999999999ms'])('a bad duration %j', (d) => {
    const err = refused({ sessionTtl: d }, '$.sessionTtl');
    expect(err.message).toMatch(/duration/);
  });

  it.each(['clockTolerance', 'handshakeTimeout', 'apiTokenMaxTtl', 'heartbeatInterval', 'reconnectMax', 'refusedReconnectMax', 'grantWarning', 'docIdleTimeout'])(
    'a bad duration for %s, and a number where a duration string belongs',
    (key) => {
      refused({ [key]: '10 minutes' }, `$.${key}`);
      refused({ [key]: 30 }, `$.${key}`);
    },
  );

  it.each(['7400', 'localhost', ':7400', '127.0.0.1:', '127.0.0.1:65536', '127.0.0.1:-1', '127.0.0.1:7400:1', 'http://127.0.0.1:7400', '::1:7400', '[::1]', 'a b:1', ''])(
    'a bad address %j',
    (a) => {
      const err = refused({ listen: a }, '$.listen');
      expect(err.message).toMatch(/HOST:PORT/);
      refused({ api: a }, '$.api');
    },
  );

  it('an api on a port browsers and fetch refuse to connect to (apps and the CLI could not reach it)', () => {
    for (const port of [6000, 6666, 6679, 5060, 10080]) expect(refused({ api: `127.0.0.1:${port}` }, '$.api').message).toMatch(/bad ports/);
    // Peers dial with WebSockets of their own: any port will do for listen.
    expect(parseNodeConfig(FILE, '/data', { listen: '127.0.0.1:6000' }).listen.port).toBe(6000);
  });

  it('an address that is not a string', () => {
    refused({ api: 7401 }, '$.api');
    refused({ listen: null }, '$.listen');
  });

  it.each(['maxPreAuthBytes', 'maxFrameBytes', 'maxUpdateBytes', 'maxQueuedBytes', 'maxDocsInMemory', 'maxPendingBytes', 'maxHeldBytes', 'maxUnauthenticated', 'maxUnauthenticatedPerAddress', 'handshakesPerMinute', 'snapshotEvery', 'maxPeerBytesPerSecond'])(
    'a bad count for %s (zero, negative, fraction, string)',
    (key) => {
      for (const v of [0, -1, 1.5, '1024', null]) refused({ [key]: v }, `$.${key}`);
    },
  );

  it('a durability that is neither fsync nor relaxed', () => {
    refused({ durability: 'sometimes' }, '$.durability');
    refused({ durability: true }, '$.durability');
  });

  it('allowedOrigins that is not a list of non-empty strings, naming the index', () => {
    refused({ allowedOrigins: 'http://localhost' }, '$.allowedOrigins');
    refused({ allowedOrigins: ['http://a', ''] }, '$.allowedOrigins[1]');
    refused({ allowedOrigins: ['http://a', 3] }, '$.allowedOrigins[1]');
  });

  it('a bad name or file name', () => {
    refused({ name: '' }, '$.name');
    refused({ name: 'x'.repeat(101) }, '$.name');
    refused({ peersFile: '' }, '$.peersFile');
    refused({ grantsFile: 7 }, '$.grantsFile');
  });

  it('a frame size that cannot carry the largest update with its token', () => {
    const err = refused({ maxUpdateBytes: 16 * 1024 * 1024 }, '$.maxFrameBytes');
    expect(err.message).toMatch(/maxUpdateBytes/);
    refused({ maxFrameBytes: 1024 * 1024, maxUpdateBytes: 1024 * 1024 }, '$.maxFrameBytes');
    expect(parse({ maxFrameBytes: 1024 * 1024 + 65_536, maxUpdateBytes: 1024 * 1024 }).maxFrameBytes).toBe(1024 * 1024 + 65_536);
  });

  it('a document that is not an object', () => {
    for (const json of [[], null, 'x', 3]) refused(json, '$');
  });

  it('invalid JSON read from disk, naming the file', async () => {
    const dir = await tempDir();
    const file = join(dir, 'tessera.json');
    await writeFile(file, '{ "listen": "127.0.0.1:0", }');
    const err = await loadNodeConfig(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect(err).toMatchObject({ code: 'ERR_CONFIG', file, path: '$' });
    expect((err as Error).message).toMatch(/not valid JSON/);
  });

  it('an unknown key read from disk, naming the absolute file', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'tessera.json'), JSON.stringify({ api: '127.0.0.1:0', listne: '127.0.0.1:0' }));
    await expect(loadNodeConfig(dir)).rejects.toMatchObject({ code: 'ERR_CONFIG', file: join(dir, 'tessera.json'), path: '$.listne' });
  });

  it('an unreadable tessera.json (a folder) is a config error, not a crash', async () => {
    const dir = await tempDir();
    await mkdir(join(dir, 'tessera.json'));
    await expect(loadNodeConfig(dir)).rejects.toMatchObject({ code: 'ERR_CONFIG', path: '$' });
  });
});
