/**
 * One error type for everything a user can see: a string code, a message that
 * says what is wrong and where, and a hint that says what to do next.
 *
 * Codes are stable (scripts match on them); messages may change.
 */
export type ErrorCode =
  // usage: exit code 2
  | 'USAGE'
  | 'BAD_SIZE'
  | 'BAD_TIME'
  | 'BAD_VOLUME_SPEC'
  // records and formats
  | 'RECORD_TRUNCATED'
  | 'RECORD_BAD_MAGIC'
  | 'RECORD_BAD_VERSION'
  | 'RECORD_BAD_TYPE'
  | 'RECORD_BAD_CRC'
  | 'RECORD_BAD_FIELD'
  | 'DATA_BAD_CRC'
  | 'SUPERBLOCK_TRUNCATED'
  | 'SUPERBLOCK_BAD_MAGIC'
  | 'SUPERBLOCK_BAD_CRC'
  | 'SUPERBLOCK_BAD_FIELD'
  // journal volume and group
  | 'JOURNAL_NOT_JOURNAL'
  | 'JOURNAL_TOO_SMALL'
  | 'JOURNAL_CORRUPT'
  | 'JOURNAL_MISMATCH'
  | 'JOURNAL_FULL'
  | 'JOURNAL_PURGED'
  | 'JOURNAL_SUSPENDED'
  | 'RECORD_TOO_LARGE'
  | 'GROUP_EXISTS'
  | 'GROUP_NOT_FOUND'
  | 'GROUP_BAD_CONFIG'
  // a state file of a group directory is damaged: each its own code (what to do differs)
  | 'BITMAP_DAMAGED'
  | 'SCAN_STATE_DAMAGED'
  | 'CHAIN_STATE_DAMAGED'
  | 'LINK_REGISTRY_DAMAGED'
  | 'FENCE_DAMAGED'
  | 'DEMOTE_STATE_DAMAGED'
  | 'OUTSIDE_STATE_DAMAGED'
  | 'GROUP_LOCKED'
  | 'CONTROL_PROTOCOL'
  | 'OWNER_UNREACHABLE'
  | 'GROUP_CLOSED'
  | 'MARKER_EXISTS'
  | 'MARKER_BAD_NAME'
  | 'BASE_IN_PROGRESS'
  | 'GROUP_FENCED'
  | 'GROUP_DEMOTED'
  | 'PROMOTE_REFUSED'
  | 'DEMOTE_REFUSED'
  // volumes
  | 'VOLUME_NOT_FOUND'
  | 'VOLUME_UNKNOWN'
  | 'VOLUME_SIZE_MISMATCH'
  | 'VOLUME_NOT_USABLE'
  | 'VOLUME_OUT_OF_RANGE'
  // tapes
  | 'TAPE_DAMAGED'
  | 'TAPE_TRUNCATED'
  | 'TAPE_AUTH_FAILED'
  | 'TAPE_KEY_REQUIRED'
  | 'TAPE_BAD_LABEL'
  | 'TAPE_FOREIGN'
  | 'TAPE_CONFLICT'
  | 'TAPE_CHAIN_BROKEN'
  | 'TAPE_DIVERGED'
  | 'TAPE_PLAINTEXT'
  | 'TAPE_TOO_LARGE'
  | 'TAPE_EXISTS'
  | 'TAPE_VERIFY_FAILED'
  | 'MEDIA_TOO_SMALL'
  | 'MEDIA_END'
  | 'MEDIA_NOT_MOUNTED'
  | 'EXPORT_BUSY'
  | 'HOOK_FAILED'
  // object storage
  | 'S3_BAD_URL'
  | 'S3_NO_BUCKET'
  | 'S3_ACCESS_DENIED'
  | 'S3_NOT_FOUND'
  | 'S3_UNREACHABLE'
  | 'S3_MISMATCH'
  | 'S3_ERROR'
  // direct link
  | 'LINK_PROTOCOL'
  | 'LINK_VERSION'
  | 'LINK_AUTH'
  | 'LINK_FOREIGN'
  | 'LINK_POSITION'
  | 'LINK_UNREACHABLE'
  | 'LINK_CLOSED'
  | 'LINK_REFUSED'
  | 'LINK_DIVERGED'
  // replica
  | 'REPLICA_NOT_FOUND'
  | 'REPLICA_NOT_EMPTY'
  | 'REPLICA_BAD'
  | 'REPLICA_IN_USE'
  | 'REPLICA_DIVERGED'
  | 'REPLICA_PROMOTED'
  | 'DRILL_FAILED'
  | 'ACK_INVALID'
  // restore
  | 'RESTORE_REFUSED'
  | 'TARGET_NOT_USABLE'
  | 'DIGEST_MISMATCH'
  | 'IO'
  // a bug of jship's own
  | 'INTERNAL';

const USAGE_CODES: ReadonlySet<ErrorCode> = new Set(['USAGE', 'BAD_SIZE', 'BAD_TIME', 'BAD_VOLUME_SPEC', 'MARKER_BAD_NAME', 'S3_BAD_URL']);

export interface JshipErrorOptions {
  /** What to do next, in one sentence. */
  hint?: string;
  /** Where: a file, a sequence number, an offset. Printed with --json. */
  details?: Record<string, string | number | bigint | boolean | null>;
  cause?: unknown;
}

const PARAM = /\{\{([A-Za-z][A-Za-z0-9]*)\}\}/g;

/**
 * Names a parameter of the library call in an error's message or hint.
 * Callers of the library read the parameter's name; the CLI shows the flag
 * that sets it (cli/flags.ts). The names are in `details.params`.
 */
export function param(name: string): string {
  return `{{${name}}}`;
}

const render = (text: string, show: (name: string) => string): string => text.replace(PARAM, (_m, name: string) => show(name));

export class JshipError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  readonly details: Record<string, string | number | bigint | boolean | null>;
  /** The message and hint as thrown, parameters still marked (param()). */
  readonly template: { message: string; hint: string | undefined };

  constructor(code: ErrorCode, message: string, options: JshipErrorOptions = {}) {
    super(render(message, (n) => n), options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'JshipError';
    this.code = code;
    this.template = { message, hint: options.hint };
    this.hint = options.hint === undefined ? undefined : render(options.hint, (n) => n);
    const params = [...new Set([...`${message} ${options.hint ?? ''}`.matchAll(PARAM)].map((m) => m[1] as string))];
    this.details = { ...(params.length > 0 ? { params: params.join(',') } : {}), ...options.details };
  }

  /** The message and hint with each parameter shown as `show` says (the CLI: as its flag). */
  render(show: (name: string) => string): { message: string; hint: string | undefined } {
    const { message, hint } = this.template;
    return { message: render(message, show), hint: hint === undefined ? undefined : render(hint, show) };
  }

  /** True for errors in what the user typed (exit code 2), false for failures of the work (exit 1). */
  get isUsage(): boolean {
    return USAGE_CODES.has(this.code);
  }

  toJSON(): { code: ErrorCode; message: string; hint: string | null; details: Record<string, unknown> } {
    const details: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(this.details)) details[k] = typeof v === 'bigint' ? v.toString() : v;
    return { code: this.code, message: this.message, hint: this.hint ?? null, details };
  }
}

export function isJshipError(e: unknown, code?: ErrorCode): e is JshipError {
  return e instanceof JshipError && (code === undefined || e.code === code);
}

/** What an operator can do about an error from the system (errno) or SQLite, by its code. */
const SYSTEM_HINTS: Record<string, { what: string; hint: string }> = {
  ENOSPC: { what: 'no space left on the file system', hint: 'free space there (or give it more room), then run the same command again: nothing half written was kept' },
  EDQUOT: { what: 'the disk quota is exhausted', hint: 'free space within the quota, then run the same command again' },
  SQLITE_FULL: { what: 'no space left for the catalogue (SQLite: database or disk is full)', hint: 'free space on the replica\'s file system, then run the same command again: the catalogue rolled back' },
  EROFS: { what: 'the file system is read-only', hint: 'remount it read-write, or name a place on a writable file system' },
  EACCES: { what: 'permission denied', hint: 'check the permissions of the path named (and that jship runs as the right user)' },
  EPERM: { what: 'operation not permitted', hint: 'check the permissions of the path named (and that jship runs as the right user)' },
  ENOENT: { what: 'no such file or directory', hint: 'check the path named' },
  ENOTDIR: { what: 'a part of the path is not a directory', hint: 'check the path named' },
  EIO: { what: 'the device reported an I/O error', hint: 'check the device and the kernel log (dmesg); the data on it may be damaged' },
};

/**
 * `e`, marked as an error about the file `path` when it is a system error
 * that names none (those of a file handle: "ENOSPC: no space left on
 * device, write"), so that the message says which file.
 */
export function atPath(e: unknown, path: string): unknown {
  if (e instanceof Error && typeof (e as { code?: unknown }).code === 'string' && (e as { path?: unknown }).path === undefined) {
    (e as { path?: string }).path = path;
  }
  return e;
}

/** A rejection handler that rethrows what it gets marked by atPath (`.catch(rethrowAt(path))`). */
export function rethrowAt(path: string): (e: unknown) => never {
  return (e) => {
    throw atPath(e, path);
  };
}

/**
 * Any error as a JshipError: errors from the system and SQLite get the code
 * IO with a hint by their code; anything else is reported as unexpected.
 */
export function asJshipError(e: unknown): JshipError {
  if (e instanceof JshipError) return e;
  const code = (e as { code?: unknown })?.code;
  let message = (e as Error)?.message ?? String(e);
  // A system error on a file handle names no file: the one the caller knew it by (atPath) is named.
  const path = (e as { path?: unknown })?.path;
  if (typeof path === 'string' && !message.includes(path)) message = `${path}: ${message}`;
  const known = typeof code === 'string' ? SYSTEM_HINTS[code] : undefined;
  if (known) return new JshipError('IO', message.includes(known.what) ? message : `${known.what}: ${message}`, { hint: known.hint, cause: e });
  return new JshipError('IO', message, { hint: 'this is unexpected; the message above says what failed', cause: e });
}
