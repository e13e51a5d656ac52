import type { Command } from 'commander';
import { readKeyRing, type KeyRing } from '../tape/crypto.js';

export interface KeyCliOptions {
  key: string[];
  keyDir: string[];
}

const collect = (v: string, all: string[]): string[] => [...all, v];

/** --key FILE (repeatable) and --key-dir DIR, for verbs that read encrypted tapes: each tape is opened with the key its label names. */
export function withKeyOptions(cmd: Command): Command {
  return cmd
    .option('--key <FILE>', 'a key of encrypted tapes (repeat for tapes written under several keys, e.g. across a key rotation)', collect, [])
    .option('--key-dir <DIR>', 'a directory of key files: each tape is opened with the one whose id its label names', collect, []);
}

export function keyRing(opts: KeyCliOptions): Promise<KeyRing | undefined> {
  return readKeyRing(opts.key, opts.keyDir);
}
