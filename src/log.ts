import { pino, type Logger, type DestinationStream } from 'pino';

/** Anything key- or token-shaped is censored wherever it appears in a log object. */
const SECRET_FIELDS = ['privateKey', 'd', 'token', 'authorization', 'jwt', 'secret', 'key', 'sessionKey', 'grant'];
export const REDACT_PATHS = [...SECRET_FIELDS, ...SECRET_FIELDS.map((f) => `*.${f}`), 'req.headers.authorization', 'req.headers.cookie'];

/** The daemon's JSON logger (pino) on stdout, or on the given stream. */
export function createLogger(opts: { level?: string; destination?: DestinationStream } = {}): Logger {
  return pino(
    {
      level: opts.level ?? process.env.TESSERA_LOG_LEVEL ?? 'info',
      base: { pid: process.pid },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    },
    opts.destination ?? pino.destination({ dest: 1, sync: true }),
  );
}

export type { Logger };
