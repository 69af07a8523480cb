/**
 * A receiver remembers, per session, what it refused by policy (PROTOCOL.md
 * §6.6). Policy checks come before the signature, so the claims are the
 * sender's word: a listed peer can send unsigned tokens with made-up
 * document names and origins. What one session keeps alive for them stays
 * bounded: measured as the heap the node frees when that session closes.
 * Real node on 127.0.0.1, port 0, with its own LevelDB folder; the raw peer
 * does the real handshake.
 */
import { randomBytes } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { generateKeyPair } from '../../src/identity/keys.js';
import type { NodeId } from '../../src/types.js';
import { setPeers, testNode } from '../helpers/cluster.js';
import { RawSyncPeer, rawEntry } from '../helpers/raw-peer.js';
import { waitUntil } from '../helpers/wait.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const HEADER = 'eyJhbGciOiJFZERTQSIsInR5cCI6InRlc3NlcmEtZW52ZWxvcGUrand0In0';
const b64 = (n: number) => randomBytes(n).toString('base64url');

/** An envelope token with well-formed claims and a signature that is never checked: its origin is unknown (R3). */
function junk(i: number): { token: string; update: Uint8Array } {
  const doc = `junk/${i.toString(36)}/${'d'.repeat(180)}`;
  const claims = { iss: b64(32), doc, feed: b64(48), seq: 1, h: b64(32), clients: [], iat: 0 };
  return { token: `${HEADER}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${'A'.repeat(86)}`, update: new Uint8Array([0, 0]) };
}

async function heapUsed(): Promise<number> {
  for (let i = 0; i < 4; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
  return process.memoryUsage().heapUsed;
}

describe('the refused-feed memory under made-up claims', () => {
  it('a peer cannot make the node keep tens of MiB for its session with unsigned envelopes of made-up documents', async () => {
    const target = await testNode('target');
    const mallory = await generateKeyPair();
    await setPeers(target, [rawEntry('mallory', mallory)]);
    const peer = await RawSyncPeer.dial(target.url, mallory, target);
    const before = await heapUsed();

    const TOTAL = 65_536;
    const BATCH = 2048;
    for (let i = 0; i < TOTAL; i += BATCH) peer.offer(...Array.from({ length: BATCH }, (_, j) => junk(i + j)));
    const answered = () => peer.received.reduce((n, m) => n + (m.type === 'notWanted' ? m.items.length : 0), 0);
    await waitUntil(() => answered() >= TOTAL, { what: 'the node refused every junk envelope', timeoutMs: 60_000 });
    expect(peer.isOpen).toBe(true);

    // The test's own copies (the node's log lines kept for the test, the node's answers) are not the node's memory.
    target.lines.length = 0;
    peer.received.length = 0;
    const during = await heapUsed();
    peer.close();
    await waitUntil(() => !target.daemon.peerManager.session(mallory.id as NodeId), { what: 'the session is gone at the node' });
    // A closed session's socket is cut 2 s later at the latest (its timer holds the session until then).
    await new Promise((r) => setTimeout(r, 2500));
    target.lines.length = 0;
    const after = await heapUsed();
    const keptBySession = during - after;
    const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
    console.log(`heap: before ${mib(before)}, during ${mib(during)}, after close ${mib(after)}; kept by the session ${mib(keptBySession)}`);
    expect(keptBySession).toBeLessThan(8 * 2 ** 20);
  }, 120_000);
});
