import type { KeyObject } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { signatureVerdict as verifyOne, type SignatureJob, type Verdict } from './envelope.js';

export type { SignatureJob, Verdict };

/**
 * The worker: raw Ed25519 verification and SHA-256, nothing else (claims,
 * policy and parsing stay on the main thread). Plain CommonJS evaluated in
 * the worker, so it runs the same from the compiled daemon and from sources.
 */
const WORKER = `
const { parentPort } = require('node:worker_threads');
const { verify, createHash } = require('node:crypto');
parentPort.on('message', ({ id, keys, jobs }) => {
  const verdicts = jobs.map(([input, sig, k, update, h]) =>
    !verify(null, input, keys[k], sig) ? 1 : createHash('sha256').update(update).digest('base64url') !== h ? 2 : 0);
  parentPort.postMessage({ id, verdicts });
});
`;

const VERDICTS: readonly Verdict[] = ['ok', 'signature', 'hash'];

/**
 * Verifies envelope signatures. A batch big enough to be worth it (a peer
 * catching up, a burst) is split: one share goes to a worker thread while
 * this thread verifies the rest, so both cores verify; small batches (the
 * live trickle, where a thread hop would only add latency) are verified
 * here. If the worker fails, everything is verified here and a new worker
 * is started for the next batch.
 */
export class Verifier {
  readonly #minBatch: number;
  readonly #log: Logger;
  #worker: Worker | undefined;
  #nextId = 0;
  readonly #waiting = new Map<number, { resolve: (v: Verdict[]) => void; reject: (err: Error) => void }>();
  #closed = false;

  constructor(opts: { log: Logger; minBatch?: number }) {
    this.#log = opts.log;
    this.#minBatch = opts.minBatch ?? 32;
  }

  async verify(jobs: readonly SignatureJob[]): Promise<Verdict[]> {
    if (jobs.length < this.#minBatch || this.#closed) return jobs.map(verifyOne);
    // The worker's share is a little over half: this thread also pays for handing it over.
    const cut = Math.ceil(jobs.length * 0.55);
    const share = jobs.slice(0, cut);
    const remote = this.#post(share);
    const local = jobs.slice(cut).map(verifyOne);
    try {
      const verdicts = await remote;
      if (verdicts.length !== share.length) throw new Error(`signature worker answered ${verdicts.length} of ${share.length}`);
      return [...verdicts, ...local];
    } catch (err) {
      this.#log.warn({ err }, 'signature worker failed; verifying on the main thread');
      return [...share.map(verifyOne), ...local];
    }
  }

  /** Hands jobs to the worker; any failure (it cannot start, cannot take the message, dies) rejects. */
  async #post(jobs: readonly SignatureJob[]): Promise<Verdict[]> {
    const worker = this.#start();
    const keys: KeyObject[] = [];
    const index = new Map<KeyObject, number>();
    const encoded = jobs.map((j) => {
      let k = index.get(j.key);
      if (k === undefined) index.set(j.key, (k = keys.push(j.key) - 1));
      return [j.input, j.sig, k, j.update, j.h];
    });
    const id = this.#nextId++;
    return new Promise<Verdict[]>((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      try {
        worker.postMessage({ id, keys, jobs: encoded });
      } catch (err) {
        this.#waiting.delete(id);
        reject(err as Error);
      }
    });
  }

  #start(): Worker {
    if (this.#worker) return this.#worker;
    const worker = new Worker(WORKER, { eval: true });
    worker.unref();
    worker.on('message', ({ id, verdicts }: { id: number; verdicts: number[] }) => {
      const w = this.#waiting.get(id);
      this.#waiting.delete(id);
      w?.resolve(verdicts.map((v) => VERDICTS[v] ?? 'signature'));
    });
    const fail = (err: Error) => {
      if (this.#worker !== worker) return;
      this.#worker = undefined;
      for (const w of this.#waiting.values()) w.reject(err);
      this.#waiting.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`signature worker exited with code ${code}`)));
    this.#worker = worker;
    return worker;
  }

  /** Stops the worker; batches it was verifying are verified on this thread instead. */
  async close(): Promise<void> {
    this.#closed = true;
    const worker = this.#worker;
    this.#worker = undefined;
    for (const w of this.#waiting.values()) w.reject(new Error('verifier closed'));
    this.#waiting.clear();
    if (worker) await worker.terminate();
  }
}
