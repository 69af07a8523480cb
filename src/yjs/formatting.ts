import * as Y from 'yjs';

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
 * `leaveFormattingAsWritten` keeps Yjs from asking for the tidying: a
 * document on a node holds exactly what its updates say.
 */
const own = Symbol('formatting left as written');

export function leaveFormattingAsWritten(): void {
  const proto = Y.Text.prototype as unknown as { _callObserver: (tr: Y.Transaction, subs: Set<string | null>) => void; [own]?: true };
  if (proto[own]) return;
  const callObserver = proto._callObserver;
  proto._callObserver = function (this: Y.Text, tr: Y.Transaction, subs: Set<string | null>) {
    const asked = tr._needFormattingCleanup;
    callObserver.call(this, tr, subs);
    tr._needFormattingCleanup = asked;
  };
  proto[own] = true;
}
