/**
 * Insertion points (src/yjs/parse.ts): no client puts two items at one
 * place, which every update Yjs writes keeps to, and is refused otherwise;
 * an envelope puts at most ENVELOPE_LIMITS.crowd items at one place; an
 * update carries at most MAX_SUBDOCS sub-documents.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as Y from 'yjs';
import { ENVELOPE_LIMITS } from '../../../src/sync/envelope.js';
import { MAX_SUBDOCS, parseUpdate } from '../../../src/yjs/parse.js';
import { containers, randomDocument } from '../../helpers/random-doc.js';
import { rng } from '../../helpers/rng.js';
import { atStart } from '../../helpers/updates.js';

const APP = { structs: Infinity, deleteRanges: Infinity, crowd: Infinity };

describe('insertion points', () => {
  it('every update Yjs writes (random editing of every kind by several clients, each update alone and merged) keeps one item per client per place', () => {
    fc.assert(
      fc.property(fc.integer(), (seed) => {
        const r = rng(seed);
        const doc = new Y.Doc();
        doc.clientID = 9;
        Y.applyUpdate(doc, randomDocument(seed));
        const updates = [Y.encodeStateAsUpdate(doc)];
        doc.on('update', (u: Uint8Array) => updates.push(u));
        for (let i = 0; i < 60; i++) {
          doc.transact(() => {
            const t = r.pick(containers(doc));
            if (t instanceof Y.Map) t.set(`k${r.int(3)}`, r.int(9));
            else if (t.length && r.chance(0.4)) t.delete(r.int(t.length), 1);
            else if (t instanceof Y.Array) [0, 1, 2].forEach(() => t.insert(r.int(t.length + 1), [r.int(9)]));
            else t.insert(r.int(t.length + 1), [new Y.XmlText('q')]);
          });
          const text = doc.getText('t');
          if (r.chance(0.3)) text.insert(r.int(text.length + 1), 'ab', r.chance(0.5) ? { bold: true } : {});
          if (r.chance(0.2) && text.length > 1) text.format(r.int(text.length - 1), 1, { italic: true });
        }
        for (const u of [...updates, Y.mergeUpdates(updates)]) expect(() => parseUpdate(u, APP)).not.toThrow();
      }),
      { numRuns: 150 },
    );
  });

  it('one client putting two items at one place is refused', () => {
    expect(() => parseUpdate(atStart([2, 2]), APP)).toThrow('client 2 puts two items at one place');
    expect(() => parseUpdate(atStart([2, 1], [3, 1]), APP)).not.toThrow();
  });

  it(`an envelope puts at most ${ENVELOPE_LIMITS.crowd} items at one place`, () => {
    const clients = (n: number) => Array.from({ length: n }, (_, i): [number, number] => [100 + i, 1]);
    expect(() => parseUpdate(atStart(...clients(ENVELOPE_LIMITS.crowd!)), ENVELOPE_LIMITS)).not.toThrow();
    expect(() => parseUpdate(atStart(...clients(ENVELOPE_LIMITS.crowd! + 1)), ENVELOPE_LIMITS)).toThrow(`more than ${ENVELOPE_LIMITS.crowd} items at one place`);
  });

  it(`at most ${MAX_SUBDOCS} sub-documents in one update`, () => {
    const withSubdocs = (n: number) => {
      const d = new Y.Doc();
      d.getArray('a').insert(0, Array.from({ length: n }, () => new Y.Doc()));
      return Y.encodeStateAsUpdate(d);
    };
    for (const limits of [APP, ENVELOPE_LIMITS]) {
      expect(() => parseUpdate(withSubdocs(MAX_SUBDOCS), limits)).not.toThrow();
      expect(() => parseUpdate(withSubdocs(MAX_SUBDOCS + 1), limits)).toThrow(`more than ${MAX_SUBDOCS} sub-documents`);
    }
  });
});
