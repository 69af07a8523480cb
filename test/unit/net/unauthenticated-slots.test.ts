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
});
