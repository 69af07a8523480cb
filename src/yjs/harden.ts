import { shareContentRuns } from './content-runs.js';
import { walkTypesIteratively } from './type-walks.js';

/**
 * Replaces the parts of Yjs whose cost a writer could blow up with a small
 * update, with versions that do the same work without the blow-up: nested
 * types deleted without recursion (type-walks.ts), array items cut and
 * joined without copying (content-runs.ts). Called where documents are made;
 * calling it again does no harm.
 */
export function hardenYjs(): void {
  walkTypesIteratively();
  shareContentRuns();
}
