import { JshipError, asJshipError } from '../core/errors.js';

/** Library parameters whose flag is not their name in kebab case. */
const FLAGS: Record<string, string> = {
  volumes: '--volume',
  targets: '--target',
  tapes: '--follow',
  replicaDir: '--replica',
  from: '--follow',
  keyFiles: '--key',
  journalPath: '--journal',
};

/** The flag that sets a library parameter (`mediaSize` → `--media-size`). */
export function flagOf(name: string): string {
  return FLAGS[name] ?? `--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/** An error as the command line shows it: the library's parameters named by their flags. */
export function cliError(e: unknown): JshipError {
  const err = asJshipError(e);
  const { message, hint } = err.render(flagOf);
  if (message === err.message && hint === err.hint) return err;
  return new JshipError(err.code, message, { ...(hint !== undefined ? { hint } : {}), details: err.details, cause: err });
}
