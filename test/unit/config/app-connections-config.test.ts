import { describe, expect, it } from 'vitest';
import { parseNodeConfig } from '../../../src/config/node-config.js';
import { ConfigError } from '../../../src/errors.js';

const FILE = '/srv/tessera/node/tessera.json';
const parse = (json: unknown) => parseNodeConfig(FILE, '/srv/tessera/node', json);

function refusedAt(json: unknown): string {
  try {
    parse(json);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message.startsWith(`${FILE}: ${(err as ConfigError).path}: `)).toBe(true);
    return (err as ConfigError).path;
  }
  throw new Error(`expected ${JSON.stringify(json)} to be refused`);
}

describe('maxAppConnections and maxAppConnectionsPerToken', () => {
  it('default to 4096 in all and a quarter of that per token; the share follows maxAppConnections unless set', () => {
    expect(parse({})).toMatchObject({ maxAppConnections: 4096, maxAppConnectionsPerToken: 1024 });
    expect(parse({ maxAppConnections: 100 })).toMatchObject({ maxAppConnections: 100, maxAppConnectionsPerToken: 25 });
    expect(parse({ maxAppConnections: 2 })).toMatchObject({ maxAppConnections: 2, maxAppConnectionsPerToken: 1 });
    expect(parse({ maxAppConnections: 100, maxAppConnectionsPerToken: 100 })).toMatchObject({ maxAppConnectionsPerToken: 100 });
  });

  it('a per-token share above the total is refused, naming the key', () => {
    expect(refusedAt({ maxAppConnectionsPerToken: 5000 })).toBe('$.maxAppConnectionsPerToken');
    expect(refusedAt({ maxAppConnections: 10, maxAppConnectionsPerToken: 11 })).toBe('$.maxAppConnectionsPerToken');
  });

  it.each(['maxAppConnections', 'maxAppConnectionsPerToken'])('a bad count for %s (zero, negative, fraction, string, null)', (key) => {
    for (const v of [0, -1, 1.5, '1024', null]) expect(refusedAt({ [key]: v })).toBe(`$.${key}`);
  });

  it('a misspelt key is unknown', () => {
    expect(refusedAt({ maxAppConnection: 10 })).toBe('$.maxAppConnection');
  });
});
