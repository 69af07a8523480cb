import * as Y from 'yjs';

/** Set on Y.Text's prototype once the method is replaced. */
const own = Symbol('formatting left as written');
/** Documents of this node: marked where they are made. */
const nodeDocs = new WeakSet<Y.Doc>();

/** Marks a node's document: after applied updates, its text formatting is left as they write it. */
export function leaveFormattingAsWrittenIn(doc: Y.Doc): void {
  nodeDocs.add(doc);
}

/**
 * After a transaction that did not start in this document (an update
 * applied), Yjs tidies the formatting of every text that has any: it looks
 * for format marks made redundant and deletes them, in a transaction of its
 * own. A node must not do that: the deletions would be its own edits,
 * signed by nobody and sent to no peer, made wherever its batches of
 * updates happened to end (so not alike on every node); and each deleted
 * item of a text scans the whole run of deleted items around it, so one
 * 8-byte deletion of 65,000 one-character items took 27 s. Editors tidy the
 * formatting they show themselves.
 *
 * `leaveFormattingAsWritten` keeps Yjs from asking for the tidying in the
 * documents marked with `leaveFormattingAsWrittenIn` (a node's own): they
 * hold exactly what their updates say. Other documents in the process (an
 * editor's, in a program that embeds a node) tidy as Yjs does.
 */
export function leaveFormattingAsWritten(): void {
  const proto = Y.Text.prototype as unknown as { _callObserver: (tr: Y.Transaction, subs: Set<string | null>) => void; [own]?: true };
  if (proto[own]) return;
  const callObserver = proto._callObserver;
  proto._callObserver = function (this: Y.Text, tr: Y.Transaction, subs: Set<string | null>) {
    const asked = tr._needFormattingCleanup;
    callObserver.call(this, tr, subs);
    if (nodeDocs.has(tr.doc)) tr._needFormattingCleanup = asked;
  };
  proto[own] = true;
}
