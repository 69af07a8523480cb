import * as Y from 'yjs';

/**
 * Yjs deletes and garbage-collects a nested type by recursion: deleting an
 * item deletes every item of the type it holds, and so on down. Types can
 * nest as deep as a writer likes (each one only names its parent, in about
 * six bytes), and a few thousand levels overflow the stack in the middle of
 * a transaction. The envelope that deletes the outer item is already signed,
 * durable and forwarded by then, so every node that applies it would be left
 * with a half-applied update and a document it can no longer read.
 *
 * `walkTypesIteratively` replaces the two recursive methods of ContentType
 * with walks that keep their own stack. The order of every effect is the
 * one the recursion has (depth first, each item before what it holds), so
 * the document, the transaction's delete set and its changed types come out
 * the same; only the call stack stays flat.
 *
 * Item.delete and Item.gc call these methods on the content they hold, so
 * while a walk runs, a call for a nested type pushes it on the walk's stack
 * and returns; the walk takes it up before the next sibling, as the
 * recursion would. (Item.gc replaces the item in the store after its
 * content's gc returns, so a nested item is replaced before, rather than
 * after, its own children: each child is still reached through the type's
 * own list, and the store ends up the same.)
 */

type Store = Parameters<Y.ContentType['gc']>[0];
type Walk = Generator<void, void, void>;

const recursive = { delete: Y.ContentType.prototype.delete, gc: Y.ContentType.prototype.gc };

/** The walk in progress: frames of the types being deleted or collected, innermost last. */
let walking: Walk[] | null = null;

function run(frame: Walk): void {
  if (walking) {
    walking.push(frame);
    return;
  }
  const stack = [frame];
  walking = stack;
  try {
    while (stack.length) {
      const top = stack.length - 1;
      if (stack[top]!.next().done) stack.splice(top, 1);
    }
  } finally {
    walking = null;
  }
}

/** ContentType.delete, one level: each live item is deleted (its own content taken up next), deleted ones kept for merging. */
function* deleteItems(type: Y.AbstractType<any>, transaction: Y.Transaction): Walk {
  const visit = function* (item: Y.Item): Walk {
    if (!item.deleted) {
      item.delete(transaction);
      if (item.content instanceof Y.ContentType) yield;
    } else if (item.id.clock < (transaction.beforeState.get(item.id.client) ?? 0)) {
      // As Yjs does: it will be collected later, and may merge with its neighbours then.
      transaction._mergeStructs.push(item);
    }
  };
  for (let item = type._start; item !== null; item = item.right) yield* visit(item);
  for (const item of type._map.values()) yield* visit(item);
  transaction.changed.delete(type);
}

/** ContentType.gc, one level: every item of the type, and every earlier value of each key, is replaced by a GC struct. */
function* collectItems(type: Y.AbstractType<any>, store: Store): Walk {
  for (let item = type._start; item !== null; item = item.right) {
    item.gc(store, true);
    if (item.content instanceof Y.ContentType) yield;
  }
  type._start = null;
  for (let item of type._map.values() as IterableIterator<Y.Item | null>) {
    while (item !== null) {
      item.gc(store, true);
      if (item.content instanceof Y.ContentType) yield;
      item = item.left;
    }
  }
  type._map = new Map();
}

/** Installs the iterative walks (again: no harm). */
export function walkTypesIteratively(): void {
  const proto = Y.ContentType.prototype;
  proto.delete = function (this: Y.ContentType, transaction: Y.Transaction) {
    run(deleteItems(this.type, transaction));
  };
  proto.gc = function (this: Y.ContentType, store: Store) {
    run(collectItems(this.type, store));
  };
}

/** Puts Yjs's own recursive methods back (for tests that compare the two). */
export function walkTypesRecursively(): void {
  Y.ContentType.prototype.delete = recursive.delete;
  Y.ContentType.prototype.gc = recursive.gc;
}
