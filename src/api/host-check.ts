import { isLoopbackName, type HostPort } from '../util/address.js';

/**
 * DNS-rebinding defence: the Host header must name the API's own address or
 * a loopback name. Anything else is answered 421 before any other check.
 */
export function hostAllowed(hostHeader: string | undefined, own: HostPort): boolean {
  if (!hostHeader) return false;
  const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(hostHeader);
  if (!m) return false;
  const host = m[1]!.toLowerCase();
  if (isLoopbackName(host)) return true;
  const bare = host.startsWith('[') ? host.slice(1, -1) : host;
  return bare === own.host.toLowerCase() && (m[2] === undefined ? own.port === 80 : Number(m[2]) === own.port);
}

/** Whether a browser Origin is in `allowedOrigins` (`"*"` allows any). */
export function originAllowed(allowed: readonly string[], origin: string): boolean {
  return allowed.includes('*') || allowed.includes(origin);
}
