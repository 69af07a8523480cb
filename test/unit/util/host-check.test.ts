import { describe, expect, it } from 'vitest';
import { hostAllowed, originAllowed } from '../../../src/api/host-check.js';

const locals = () => ['127.0.0.1', '192.0.2.10', 'fe80::1', '2001:db8::10'];

describe('the Host check (DNS rebinding)', () => {
  it('takes loopback names on any port, and the API address on its own port only', () => {
    const own = { host: '127.0.0.1', port: 7401 };
    expect(hostAllowed('localhost:9', own, locals)).toBe(true);
    expect(hostAllowed('[::1]:7401', own, locals)).toBe(true);
    expect(hostAllowed('127.0.0.1:7401', own, locals)).toBe(true);
    expect(hostAllowed('api.example:7401', own, locals)).toBe(false);
    expect(hostAllowed(undefined, own, locals)).toBe(false);
  });

  it('on a wildcard bind, takes any address of this machine on the API port, and never a DNS name', () => {
    for (const host of ['0.0.0.0', '::']) {
      const own = { host, port: 7401 };
      expect(hostAllowed('192.0.2.10:7401', own, locals)).toBe(true);
      expect(hostAllowed('[2001:db8::10]:7401', own, locals)).toBe(true);
      expect(hostAllowed('192.0.2.10:7402', own, locals)).toBe(false);
      expect(hostAllowed('192.0.2.11:7401', own, locals)).toBe(false);
      expect(hostAllowed('rebound.example:7401', own, locals)).toBe(false);
    }
  });

  it('on a specific bind, another address of this machine is not the API', () => {
    expect(hostAllowed('192.0.2.10:7401', { host: '127.0.0.1', port: 7401 }, locals)).toBe(false);
  });
});

describe('allowedOrigins', () => {
  it('is an exact list, or "*"', () => {
    expect(originAllowed(['https://app.example'], 'https://app.example')).toBe(true);
    expect(originAllowed(['https://app.example'], 'https://app.example.evil.example')).toBe(false);
    expect(originAllowed(['*'], 'https://any.example')).toBe(true);
    expect(originAllowed([], 'https://app.example')).toBe(false);
  });
});
