import { shareContentRuns } from './content-runs.js';
import { leaveFormattingAsWritten } from './formatting.js';
import { walkTypesIteratively } from './type-walks.js';

/**
 * Replaces the parts of Yjs whose cost a writer could blow up with a small
 * update, with versions that do the same work without the blow-up: nested
 * types deleted without recursion (type-walks.ts), array items cut and
 * joined without copying (content-runs.ts), no tidying of text formatting
 * after updates (formatting.ts: a node holds what its updates say). Called
 * where documents are made; calling it again does no harm.
 */
export function hardenYjs(): void {
  walkTypesIteratively();
  shareContentRuns();
  leaveFormattingAsWritten();
}
