import { describe, expect, it } from 'vitest';
import { UnauthenticatedSlots } from '../../../src/net/unauthenticated-slots.js';

describe('UnauthenticatedSlots', () => {
  it('caps one address at its share while other addresses still get in, up to the total', () => {
    const slots = new UnauthenticatedSlots<string>({ max: 3, perAddress: 2 });
    slots.take('a1', '127.0.0.1');
    slots.take('a2', '::ffff:127.0.0.1');
    expect(slots.full('127.0.0.1')).toBe('address');
    expect(slots.full('::ffff:127.0.0.1')).toBe('address');
    expect(slots.full('::1')).toBeUndefined();
    slots.take('b1', '::1');
    expect(slots.full('::1')).toBe('all');
    expect(slots.full('10.0.0.1')).toBe('all');
  });

  it('gives a slot back exactly once, however often it is released', () => {
    const slots = new UnauthenticatedSlots<string>({ max: 10, perAddress: 2 });
    slots.take('a1', '127.0.0.1');
    slots.take('a2', '127.0.0.1');
    slots.release('a1');
    slots.release('a1');
    slots.release('never-held');
    expect(slots.full('127.0.0.1')).toBeUndefined();
    slots.take('a3', '127.0.0.1');
    expect(slots.full('127.0.0.1')).toBe('address');
  });

  it('a holder taken twice holds one slot', () => {
    const slots = new UnauthenticatedSlots<string>({ max: 10, perAddress: 2 });
    slots.take('a1', '127.0.0.1');
    slots.take('a1', '127.0.0.1');
    expect(slots.full('127.0.0.1')).toBeUndefined();
    slots.release('a1');
    slots.take('a2', '127.0.0.1');
    slots.take('a3', '127.0.0.1');
    expect(slots.full('127.0.0.1')).toBe('address');
  });

  it('an IPv6 site gets a share per /64, twice that per /56 and four times per /48, then other addresses still get in', () => {
    const slots = new UnauthenticatedSlots<string>({ max: 100, perAddress: 2 });
    let n = 0;
    // One /48 walking its /64s (within one /56 first, then across /56s).
    for (const subnet of ['0', '1', '2', '100', '200', '300']) {
      for (let i = 0; i < 2; i++) if (!slots.full(`2001:db8:7:${subnet}::${i + 1}`)) slots.take(`h${n++}`, `2001:db8:7:${subnet}::${i + 1}`);
    }
    // /56 2001:db8:7:0000-00ff holds 4 (its share), the /48 holds 8 (its share): 8 in all.
    expect(n).toBe(8);
    expect(slots.full('2001:db8:7:400::1')).toBe('address');
    expect(slots.full('2001:db8:8::1')).toBeUndefined();
    expect(slots.full('192.0.2.1')).toBeUndefined();
  });
});
