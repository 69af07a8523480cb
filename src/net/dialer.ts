import type { Logger } from 'pino';
import { Close, PeerRefusal, RemoteClosed, closeKind } from '../protocol/close-codes.js';
import { backoffDelay } from './backoff.js';

export interface DialerOptions {
  /** Dials once; resolves when a session is up (or throws why not). */
  readonly dial: () => Promise<void>;
  /** Whether a live session with the peer exists (then there is nothing to dial). */
  readonly connected: () => boolean;
  readonly onState: (state: 'connecting' | 'disconnected' | 'refused') => void;
  readonly reconnectMaxMs: number;
  readonly refusedReconnectMaxMs: number;
  readonly log: Logger;
  readonly random?: () => number;
}

const BASE_MS = 250;
const REFUSED_BASE_MS = 5_000;

/**
 * Keeps one peer dialled: exponential backoff with jitter, capped at
 * reconnectMax; a refusal that retrying cannot fix (unknown, revoked, wrong
 * key) backs off much longer, up to refusedReconnectMax, but never stops,
 * since such a close arrives before authentication and could be forged.
 */
export class Dialer {
  readonly #o: DialerOptions;
  #attempt = 0;
  #timer: NodeJS.Timeout | undefined;
  #inFlight = false;
  #stopped = false;
  #timerForReauth = false;

  constructor(opts: DialerOptions) {
    this.#o = opts;
  }

  start(): void {
    this.#schedule(0, false);
  }

  /** Dial soon if there is no session (after a session closed, say). */
  kick(): void {
    if (this.#stopped || this.#inFlight || (this.#timer && !this.#timerForReauth)) return;
    clearTimeout(this.#timer);
    this.#schedule(backoffDelay(this.#attempt, BASE_MS, this.#o.reconnectMaxMs, this.#o.random), false);
  }

  /** Dial at `at` even though a session exists: re-authentication before expiry. */
  reauthAt(delayMs: number): void {
    if (this.#stopped) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#schedule(delayMs, true);
  }

  /** The kept session is not ours to re-authenticate (the peer dialled it). */
  cancelReauth(): void {
    if (this.#timer && this.#timerForReauth) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #schedule(delayMs: number, force: boolean): void {
    this.#timerForReauth = force;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#run(force);
    }, delayMs);
    this.#timer.unref?.();
  }

  async #run(force: boolean): Promise<void> {
    if (this.#stopped || this.#inFlight || (!force && this.#o.connected())) return;
    this.#inFlight = true;
    if (!this.#o.connected()) this.#o.onState('connecting');
    try {
      await this.#o.dial();
      this.#attempt = 0;
    } catch (err) {
      const permanent = isPermanent(err);
      this.#attempt++;
      const delay = permanent
        ? backoffDelay(this.#attempt, REFUSED_BASE_MS, this.#o.refusedReconnectMaxMs, this.#o.random)
        : backoffDelay(this.#attempt, BASE_MS, this.#o.reconnectMaxMs, this.#o.random);
      const code = err instanceof RemoteClosed ? err.code : err instanceof PeerRefusal ? err.kind.code : undefined;
      this.#o.log.info({ err: describe(err), code, retryInMs: delay }, permanent ? 'peer refused us; retrying much later' : 'dial failed; retrying');
      if (!this.#o.connected()) this.#o.onState(permanent ? 'refused' : 'disconnected');
      if (!this.#stopped) this.#schedule(delay, force && this.#o.connected());
    } finally {
      this.#inFlight = false;
    }
  }
}

function isPermanent(err: unknown): boolean {
  if (err instanceof RemoteClosed) return closeKind(err.code)?.retry === 'config';
  if (err instanceof PeerRefusal) return err.kind.retry === 'config' && err.kind !== Close.handshakeInvalid;
  return false;
}

function describe(err: unknown): string {
  if (err instanceof RemoteClosed || err instanceof PeerRefusal) return err.message;
  const code = (err as NodeJS.ErrnoException).code;
  return code ?? (err instanceof Error ? err.message : String(err));
}
