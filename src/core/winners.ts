/**
 * Coalescing (patent §0123): walking records from the newest to the oldest,
 * the first record to touch a sector wins it; what an older record would have
 * written there is superseded and never read. Sectors are 512 bytes; records
 * must start and end on sector boundaries (or at the volume's end), else the
 * caller replays in order instead.
 */
export const SECTOR = 512;

export interface Claim {
  volume: number;
  /** Byte range won, [start, end). */
  start: number;
  end: number;
  /** Bytes into the winning record's range where the won part starts. */
  delta: number;
}

export class SectorClaims {
  readonly #bits: Uint8Array[];
  readonly #sizes: number[];

  constructor(volumeSizes: number[]) {
    this.#sizes = volumeSizes;
    this.#bits = volumeSizes.map((s) => new Uint8Array(Math.ceil(Math.ceil(s / SECTOR) / 8)));
  }

  /** Whether a record's range can be claimed sector by sector. */
  aligned(volume: number, offset: number, length: number): boolean {
    const end = offset + length;
    return offset % SECTOR === 0 && (end % SECTOR === 0 || end === this.#sizes[volume]);
  }

  /** Claims the unclaimed sectors of a range (newest record first); returns the runs won. */
  claim(volume: number, offset: number, length: number): Claim[] {
    const bits = this.#bits[volume];
    if (!bits || length === 0) return [];
    const size = this.#sizes[volume] as number;
    const first = Math.floor(offset / SECTOR);
    const last = Math.ceil((offset + length) / SECTOR);
    const out: Claim[] = [];
    let runStart = -1;
    const close = (s: number): void => {
      if (runStart < 0) return;
      const start = runStart * SECTOR;
      const end = Math.min(s * SECTOR, size, offset + length);
      out.push({ volume, start, end, delta: start - offset });
      runStart = -1;
    };
    for (let s = first; s < last;) {
      const byte = s >> 3;
      const v = bits[byte] as number;
      if ((s & 7) === 0 && s + 8 <= last && (v === 0xff || v === 0)) {
        // A whole byte of sectors at once.
        if (v === 0xff) close(s);
        else {
          if (runStart < 0) runStart = s;
          bits[byte] = 0xff;
        }
        s += 8;
        continue;
      }
      const mask = 1 << (s & 7);
      if (v & mask) close(s);
      else {
        if (runStart < 0) runStart = s;
        bits[byte] = v | mask;
      }
      s++;
    }
    close(last);
    return out;
  }
}
