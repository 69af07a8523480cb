/**
 * Text formatting on a node (src/yjs/formatting.ts): a document holds what
 * its updates say. Yjs tidies redundant format marks after applying an
 * update, with deletions of its own that no update carries; and the tidying
 * of a long run of deleted characters scanned the run once per character.
 */
import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { hardenYjs } from '../../../src/yjs/harden.js';
import { leaveFormattingAsWrittenIn } from '../../../src/yjs/formatting.js';

hardenYjs();

/** A document as a node holds it. */
const nodeDoc = () => {
  const d = new Y.Doc();
  leaveFormattingAsWrittenIn(d);
  return d;
};

/** The document's deleted clocks, as client:clock+length runs. */
const deletedClocks = (doc: Y.Doc) => [...Y.createDeleteSetFromStructStore(doc.store).clients].flatMap(([client, items]) => items.map((d) => `${client}:${d.clock}+${d.len}`));

/** "abc"; then at once, one writer makes "b" bold and another deletes "b": the bold marks meet with nothing between. */
function boldDeleted(): { updates: Uint8Array[]; deletedByWriters: string[] } {
  const a = new Y.Doc();
  a.clientID = 1;
  a.getArray('a').insert(0, [new Y.Text('abc')]);
  const base = Y.encodeStateAsUpdate(a);
  const b = new Y.Doc();
  b.clientID = 2;
  Y.applyUpdate(b, base);
  const updates = [base];
  for (const [d, edit] of [[a, (t: Y.Text) => t.format(1, 1, { bold: true })], [b, (t: Y.Text) => t.delete(1, 1)]] as const) {
    const sv = Y.encodeStateVector(d);
    edit(d.getArray<Y.Text>('a').get(0));
    updates.push(Y.encodeStateAsUpdate(d, sv));
  }
  return { updates, deletedByWriters: [...deletedClocks(a), ...deletedClocks(b)] };
}


describe('text formatting on a node', () => {
  it('updates that leave redundant format marks: the node deletes nothing no update deletes, however the updates are grouped', () => {
    const { updates, deletedByWriters } = boldDeleted();
    const oneByOne = nodeDoc();
    for (const u of updates) Y.applyUpdate(oneByOne, u);
    const together = nodeDoc();
    Y.applyUpdate(together, Y.mergeUpdates(updates));
    // Only "b" is deleted (by its writer): the bold marks stay as the other writer left them.
    expect(deletedByWriters).toEqual(['1:2+1']);
    expect(deletedClocks(oneByOne)).toEqual(deletedByWriters);
    expect(Buffer.from(Y.encodeStateAsUpdate(oneByOne)).equals(Buffer.from(Y.encodeStateAsUpdate(together)))).toBe(true);
    expect(oneByOne.getArray<Y.Text>('a').get(0).toString()).toBe('ac');
    // Any other document in the process (an editor's, where a program embeds a node) tidies as Yjs does.
    const editor = new Y.Doc();
    for (const u of updates) Y.applyUpdate(editor, u);
    expect(deletedClocks(editor).length).toBeGreaterThan(deletedByWriters.length);
  });

  it('one deletion of 65,000 separate characters of a formatted text applies well within the test\'s time (tidying took Yjs 19 s here)', () => {
    const writer = new Y.Doc();
    writer.clientID = 2;
    const text = new Y.Text();
    writer.getArray('a').insert(0, [text]);
    text.insert(0, 'x', { bold: true });
    // Each at the start: 65,000 items that never join.
    for (let i = 0; i < 65_000; i++) text.insert(0, 'a');
    const doc = nodeDoc();
    Y.applyUpdate(doc, Y.encodeStateAsUpdate(writer));
    writer.transact(() => text.delete(0, 65_000));
    const sv = Y.encodeStateVector(doc);
    Y.applyUpdate(doc, Y.encodeStateAsUpdate(writer, sv));
    expect(doc.getArray<Y.Text>('a').get(0).toString()).toBe('x');
  }, 10_000);
});
