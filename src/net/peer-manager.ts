import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { NodeConfig } from '../config/node-config.js';
import type { PeersConfig, PeersDiff } from '../config/peers.js';
import type { KeyPair } from '../identity/keys.js';
import type { HostPort } from '../util/address.js';
import type { PeerStatus } from '../api/routes/status.js';

export interface PeerManagerOptions {
  readonly identity: KeyPair;
  readonly config: NodeConfig;
  readonly peers: PeersConfig;
  readonly log: Logger;
  readonly now: () => number;
}

/** Owns the peer listener, the dialled connections and the sessions. */
export class PeerManager {
  readonly #opts: PeerManagerOptions;
  #peers: PeersConfig;
  #server: Server | undefined;
  #bound: HostPort | undefined;

  constructor(opts: PeerManagerOptions) {
    this.#opts = opts;
    this.#peers = opts.peers;
  }

  get address(): HostPort {
    if (!this.#bound) throw new Error('peer listener not started');
    return this.#bound;
  }

  async start(): Promise<void> {
    const server = createServer((_req, res) => res.writeHead(426).end());
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.#opts.config.listen.port, this.#opts.config.listen.host, () => resolve());
    });
    this.#bound = { host: this.#opts.config.listen.host, port: (server.address() as AddressInfo).port };
    this.#server = server;
  }

  applyPeers(next: PeersConfig, _diff: PeersDiff): void {
    this.#peers = next;
  }

  status(): PeerStatus[] {
    return this.#peers.peers.map((p) => ({ name: p.name ?? null, id: p.id, url: p.url ?? null, state: p.revoked ? 'revoked' : 'disconnected', since: null }));
  }

  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
