import { describe, expect, it } from 'vitest';
import { addressGroup } from '../../../src/util/address.js';

describe('addressGroup: what counts as one remote address', () => {
  it.each([
    ['127.0.0.1', '127.0.0.1'],
    ['::ffff:127.0.0.1', '127.0.0.1'],
    ['::FFFF:10.1.2.3', '10.1.2.3'],
    ['::ffff:7f00:1', '127.0.0.1'],
    ['0:0:0:0:0:ffff:c0a8:0101', '192.168.1.1'],
  ])('an IPv4 address, plain or IPv4-mapped: %s is %s', (address, group) => {
    expect(addressGroup(address)).toBe(group);
  });

  it.each([
    ['::1', '0:0:0:0::/64'],
    ['::', '0:0:0:0::/64'],
    ['2001:db8::1', '2001:db8:0:0::/64'],
    ['2001:0db8:0000:0001:aaaa:bbbb:cccc:dddd', '2001:db8:0:1::/64'],
    ['2001:db8:0:1::ffff:1.2.3.4', '2001:db8:0:1::/64'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64'],
  ])('an IPv6 address by its /64: %s is %s', (address, group) => {
    expect(addressGroup(address)).toBe(group);
  });

  it('addresses of one /64 share a group; the next /64, ::1 and IPv4 loopback do not', () => {
    expect(addressGroup('2001:db8:0:1::1')).toBe(addressGroup('2001:db8:0:1:ffff:ffff:ffff:ffff'));
    expect(addressGroup('2001:db8:0:1::1')).not.toBe(addressGroup('2001:db8:0:2::1'));
    // ::ffff:0:0/96 lies inside ::/64: the mapped address must not fall into ::1's group.
    expect(addressGroup('::ffff:127.0.0.1')).not.toBe(addressGroup('::1'));
    expect(addressGroup('127.0.0.1')).not.toBe(addressGroup('::1'));
  });

  it('something that is not an IP address is its own group', () => {
    expect(addressGroup('?')).toBe('?');
    expect(addressGroup('')).toBe('');
  });
});
