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
