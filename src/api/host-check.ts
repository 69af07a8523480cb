import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { isLoopbackName, type HostPort } from '../util/address.js';

/**
 * DNS-rebinding defence: the Host header must name the API's own address or
 * a loopback name. Anything else is answered 421 before any other check.
 * An API bound to a wildcard address is reached at any address of this
 * machine's interfaces, so each of those counts as its own (as an address:
 * a DNS name still does not).
 */
export function hostAllowed(hostHeader: string | undefined, own: HostPort, localAddresses: () => readonly string[] = interfaceAddresses): boolean {
  if (!hostHeader) return false;
  const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(hostHeader);
  if (!m) return false;
  const host = m[1]!.toLowerCase();
  if (isLoopbackName(host)) return true;
  const bare = host.startsWith('[') ? host.slice(1, -1) : host;
  if (m[2] === undefined ? own.port !== 80 : Number(m[2]) !== own.port) return false;
  const ownHost = own.host.toLowerCase();
  if (bare === ownHost) return true;
  return (ownHost === '0.0.0.0' || ownHost === '::') && isIP(bare) !== 0 && localAddresses().some((a) => a.toLowerCase() === bare);
}

function interfaceAddresses(): string[] {
  return Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address));
}

/** Whether a browser Origin is in `allowedOrigins` (`"*"` allows any). */
export function originAllowed(allowed: readonly string[], origin: string): boolean {
  return allowed.includes('*') || allowed.includes(origin);
}
