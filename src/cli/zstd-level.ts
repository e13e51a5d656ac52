import { JshipError, asJshipError } from '../core/errors.js';
import { checkZstdLevel } from '../tape/export-request.js';

/** A zstd level as given to `flag`: a whole number, -7 to -1 (zstd's --fast levels) or 1 to 19. */
export function parseZstdLevel(text: string, flag: string): number {
  if (!/^-?\d{1,3}$/.test(text.trim())) throw new JshipError('USAGE', `${flag} ${text}: not a whole number`, { hint: `e.g. ${flag} 3, or ${flag} -1 for zstd --fast=1` });
  try {
    return checkZstdLevel(Number(text.trim()));
  } catch (e) {
    // checkZstdLevel names the library's parameter: said here as the flag that was given.
    const err = asJshipError(e);
    const { message, hint } = err.render(() => flag);
    throw new JshipError('USAGE', message, { ...(hint !== undefined ? { hint } : {}), cause: err });
  }
}

export const ZSTD_LEVEL_HELP = '1 (the default) to 19 for smaller tapes and more CPU, -1 to -7 (zstd --fast=1..7) for less CPU on data that compresses little; any level reads back with any zstd';
