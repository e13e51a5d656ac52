import type { Command } from 'commander';
import { parseSize } from '../core/sizes.js';
import { checkBlockSize } from '../tape/blocked-output.js';

export interface DeviceCliOptions {
  blockSize?: string;
}

/** --block-size, for verbs that read tapes from a drive or FIFO. */
export function withDeviceOptions(cmd: Command): Command {
  return cmd.option('--block-size <SIZE>', 'read a tape drive or FIFO in blocks of SIZE, as it was written (default 64K)');
}

export function readBlockSize(opts: DeviceCliOptions): number | undefined {
  return opts.blockSize !== undefined ? checkBlockSize(parseSize(opts.blockSize, '--block-size')) : undefined;
}
