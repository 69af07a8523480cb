import { createConnection, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

/**
 * A link the bench can cut and heal: a TCP forwarder on 127.0.0.1 port 0 in
 * front of one node's peer port (the bench's counterpart of
 * test/helpers/proxy.ts, without vitest's teardown hooks). While cut, live
 * connections are destroyed and new ones are accepted and dropped at once,
 * as a partition looks to a dialler.
 */
export class Link {
  readonly #server: Server;
  readonly #targetPort: number;
  readonly #targetHost: string;
  readonly #live = new Set<Socket>();
  #cut = false;
  #closed: Promise<void> | undefined;

  private constructor(server: Server, targetPort: number, targetHost: string) {
    this.#server = server;
    this.#targetPort = targetPort;
    this.#targetHost = targetHost;
  }

  /** Listens on 127.0.0.1 in front of `targetPort` at `targetHost` (a loopback address). */
  static async open(targetPort: number, targetHost = '127.0.0.1'): Promise<Link> {
    const server = createServer();
    const link = new Link(server, targetPort, targetHost);
    server.on('connection', (socket) => link.#forward(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', resolve);
    });
    return link;
  }

  /** `ws://127.0.0.1:PORT`, the url a dialler's peers entry gives for the target. */
  get url(): string {
    return `ws://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  get isCut(): boolean {
    return this.#cut;
  }

  cut(): void {
    this.#cut = true;
    for (const s of this.#live) s.destroy();
  }

  heal(): void {
    this.#cut = false;
  }

  /** Cuts for good and stops listening. Safe to call twice. */
  close(): Promise<void> {
    this.cut();
    return (this.#closed ??= new Promise((resolve) => this.#server.close(() => resolve())));
  }

  #forward(client: Socket): void {
    client.on('error', () => undefined);
    if (this.#cut) {
      client.destroy();
      return;
    }
    const upstream = createConnection({ host: this.#targetHost, port: this.#targetPort });
    upstream.on('error', () => undefined);
    for (const [s, other] of [[client, upstream], [upstream, client]] as const) {
      this.#live.add(s);
      s.once('close', () => {
        this.#live.delete(s);
        other.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  }
}
