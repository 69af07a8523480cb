/**
 * Errors are values with stable codes: callers `switch (err.code)`, tests
 * assert the code, and the CLI maps a code to an exit status.
 */
export class TesseraError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A config or peers file that does not validate. Names file and JSON path. */
export class ConfigError extends TesseraError {
  readonly file: string;
  readonly path: string;
  constructor(file: string, path: string, problem: string) {
    super('ERR_CONFIG', `${file}: ${path}: ${problem}`);
    this.file = file;
    this.path = path;
  }
}

/** Bad command-line arguments (exit code 2). */
export class UsageError extends TesseraError {
  constructor(message: string) {
    super('ERR_USAGE', message);
  }
}

/** The data directory is held by another Tessera process. */
export class DataDirInUseError extends TesseraError {
  constructor(dir: string, detail: string) {
    super('ERR_DATA_DIR_IN_USE', `data directory ${dir} is in use by another Tessera process${detail}`);
  }
}

/** A storage operation failed; never swallowed, always reaches the caller. */
export class StoreError extends TesseraError {
  constructor(message: string, cause?: unknown) {
    super('ERR_STORE', message, { cause });
  }
}

/**
 * A local write this node may not make: an authority it trusts revoked it,
 * and what it would sign now is beyond its cutoff (dropped everywhere,
 * itself included, at the next rebuild), so it is not acknowledged.
 */
export class RevokedError extends TesseraError {
  constructor(message: string) {
    super('ERR_REVOKED', message);
  }
}

/** A token that does not verify. `reason` is safe to show to the caller. */
export class TokenError extends TesseraError {
  constructor(code: string, message: string) {
    super(code, message);
  }
}

/** Exit code 2 for anything the user can fix by changing arguments, files or permissions. */
export function exitCodeFor(err: unknown): number {
  if (err instanceof ConfigError || err instanceof UsageError || err instanceof DataDirInUseError) return 2;
  if (isFileError(err)) return PATH_CODES.has(err.code) ? 2 : 1;
  return err instanceof TesseraError && USER_CODES.has(err.code) ? 2 : 1;
}

const USER_CODES = new Set(['ERR_KEY_EXISTS', 'ERR_KEY_FILE', 'ERR_NOT_RUNNING']);

/** File-system errors the user fixes by naming another path or changing permissions. */
const PATH_CODES = new Set(['ENOENT', 'ENOTDIR', 'EISDIR', 'EEXIST', 'EACCES', 'EPERM', 'ELOOP', 'ENAMETOOLONG', 'EROFS']);

/** An error from a system call (it names the call and the path; a stack trace adds nothing for an operator). */
export function isFileError(err: unknown): err is NodeJS.ErrnoException & { code: string } {
  return err instanceof Error && typeof (err as NodeJS.ErrnoException).code === 'string' && typeof (err as NodeJS.ErrnoException).syscall === 'string';
}
