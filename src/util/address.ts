import { isIP } from 'node:net';

/** A `HOST:PORT` address as written in config and flags (`[::1]:7400` for IPv6). */
export interface HostPort {
  readonly host: string;
  readonly port: number;
}

const PATTERN = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/;

export function parseHostPort(text: string): HostPort | undefined {
  const m = PATTERN.exec(text);
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  return { host: m[1] ?? m[2]!, port };
}

export function formatHostPort({ host, port }: HostPort): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Whether a host is a wildcard bind address (not something a peer can dial). */
export function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '';
}

const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '::1', '[::1]']);

/** Whether a host name or address is loopback (`localhost`, 127.0.0.0/8, ::1). */
export function isLoopbackName(host: string): boolean {
  const h = host.toLowerCase();
  return LOOPBACK_NAMES.has(h) || h.endsWith('.localhost') || /^127(?:\.\d{1,3}){3}$/.test(h);
}

/**
 * The group a remote address is counted under when connections are capped
 * per address: an IPv4 address as is, also when a dual-stack listener sees
 * it IPv4-mapped (`::ffff:127.0.0.1` is `127.0.0.1`); an IPv6 address by its
 * /64 prefix (`2001:db8:0:1::/64`), since one host usually holds a whole /64.
 * Anything else (no address at all, say) is its own group.
 */
export function addressGroup(address: string): string {
  if (isIP(address) === 4) return address;
  const groups = isIP(address) === 6 ? ipv6Groups(address.split('%')[0]!) : undefined;
  if (!groups) return address;
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return [groups[6]! >> 8, groups[6]! & 0xff, groups[7]! >> 8, groups[7]! & 0xff].join('.');
  }
  return `${groups.slice(0, 4).map((g) => g.toString(16)).join(':')}::/64`;
}

/**
 * The groups a remote address is counted under, each with its share (a
 * multiple of the per-address cap): an IPv4 address alone; an IPv6 address
 * by its /64, and also by the /56 and /48 around it, at twice and four
 * times the share, since one site often holds a whole /48 and could
 * otherwise take every slot one /64 at a time.
 */
export function addressGroups(address: string): { key: string; share: number }[] {
  const first = addressGroup(address);
  if (!first.endsWith('::/64')) return [{ key: first, share: 1 }];
  const groups = ipv6Groups(address.split('%')[0]!)!;
  const prefix = (bits: number) => {
    const g = groups.slice(0, Math.ceil(bits / 16));
    if (bits % 16) g[g.length - 1]! &= 0xffff << (16 - (bits % 16));
    return `${g.map((x) => (x & 0xffff).toString(16)).join(':')}::/${bits}`;
  };
  return [
    { key: first, share: 1 },
    { key: prefix(56), share: 2 },
    { key: prefix(48), share: 4 },
  ];
}

/** The eight 16-bit groups of a valid IPv6 address (`::` expanded, a dotted IPv4 tail as two groups). */
function ipv6Groups(address: string): number[] | undefined {
  const parse = (part: string): number[] =>
    part === ''
      ? []
      : part.split(':').flatMap((g) => {
          if (!g.includes('.')) return [parseInt(g, 16)];
          const [a, b, c, d] = g.split('.').map(Number) as [number, number, number, number];
          return [(a << 8) | b, (c << 8) | d];
        });
  const [head = '', tail] = address.split('::');
  const before = parse(head);
  const after = tail === undefined ? [] : parse(tail);
  const groups = [...before, ...Array<number>(8 - before.length - after.length).fill(0), ...after];
  return groups.length === 8 ? groups : undefined;
}
