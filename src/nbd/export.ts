import type { Bytes } from '../core/bytes.js';

/**
 * What an NBD connection serves: named exports with their operations, and
 * one flush for all of them (they share one journal group, so one flush
 * covers every connection's writes: that is what makes multi-conn safe).
 */
export interface Extent {
  length: number;
  /** `base:allocation` state bits (STATE_HOLE, STATE_ZERO). */
  flags: number;
}

export interface NbdExport {
  readonly name: string;
  readonly description: string;
  readonly size: number;
  /** Served read-only: NBD_FLAG_READ_ONLY, and WRITE, WRITE_ZEROES and TRIM answered EPERM. */
  readonly readOnly?: boolean;
  read(offset: number, length: number): Promise<Buffer>;
  /** `data`: the payload in one piece or as the socket reads it lies in, in order (views; not copied). */
  write(offset: number, data: Bytes, fua: boolean): Promise<void>;
  writeZeroes(offset: number, length: number, fua: boolean): Promise<void>;
  trim(offset: number, length: number, fua: boolean): Promise<void>;
  /** Reads the range ahead of use (advisory). */
  cache(offset: number, length: number): Promise<void>;
  /** Extents from `offset`, covering at least one byte and at most `length`. */
  blockStatus(offset: number, length: number): Promise<Extent[]>;
}

export interface NbdBackend {
  readonly exports: readonly NbdExport[];
  /** Largest request payload accepted (the spec's maximum block size). */
  readonly maxBlock: number;
  /** Makes every write already replied to durable, on every connection. */
  flush(): Promise<void>;
  /** Maps an error from the backend to an NBD errno and a message for the client. */
  errno(e: unknown): { errno: number; message: string };
}
