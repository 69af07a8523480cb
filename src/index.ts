/** Tessera as a library: the daemon, its configuration and the local API client. */
export { Daemon, type DaemonOptions, type DaemonFile } from './daemon.js';
export { createLogger } from './log.js';
export { TesseraClient, TesseraApiError } from './client/index.js';
export { TesseraError, ConfigError } from './errors.js';
export type { NodeId, DocName, FeedId } from './types.js';
