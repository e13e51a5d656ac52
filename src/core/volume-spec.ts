import { JshipError } from './errors.js';
import { parseSize } from './sizes.js';

/** One file or device of a volume; several make a volume group (§0030, Fig. 16). */
export interface ExtentSpec {
  path: string;
  /** Size to create a missing file with, or to require of an existing one. */
  size?: number;
}

export interface VolumeSpec {
  name: string;
  extents: ExtentSpec[];
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export function checkVolumeName(name: string): void {
  if (!NAME.test(name)) {
    throw new JshipError('BAD_VOLUME_SPEC', `volume name "${name}" is not allowed`, {
      hint: 'use 1-63 letters, digits, ".", "_" or "-", starting with a letter or digit; it becomes the NBD export name',
    });
  }
}

/**
 * Parses `NAME=PATH[:SIZE]` or `NAME=PATH1[:SIZE],PATH2[:SIZE],...`.
 * A trailing `:SIZE` is taken as a size only when it parses as one, so paths
 * with colons still work.
 */
export function parseVolumeSpec(text: string): VolumeSpec {
  const eq = text.indexOf('=');
  if (eq <= 0 || eq === text.length - 1) {
    throw new JshipError('BAD_VOLUME_SPEC', `--volume "${text}" is not NAME=PATH[:SIZE]`, {
      hint: 'e.g. --volume data=/srv/data.img:10G, or --volume vg=/dev/sdb,/dev/sdc for a volume group',
    });
  }
  const name = text.slice(0, eq);
  checkVolumeName(name);
  const extents = text.slice(eq + 1).split(',').map((part): ExtentSpec => {
    if (part === '') {
      throw new JshipError('BAD_VOLUME_SPEC', `--volume "${text}" has an empty path`, { hint: 'separate the files of a volume group with single commas' });
    }
    const colon = part.lastIndexOf(':');
    const tail = part.slice(colon + 1);
    if (colon > 0 && /^\s*\d+\s*[KMGT]?(i?B)?\s*$/i.test(tail)) {
      return { path: part.slice(0, colon), size: parseSize(tail, `size of volume "${name}"`) };
    }
    // Something that was meant as a size and is not one (":10X", ":-1", ":1e9") is an error, not part of the path.
    if (colon > 0 && /^\s*[-+]?\d/.test(tail)) {
      throw new JshipError('BAD_SIZE', `--volume "${text}": "${tail}" is not a size`, { hint: 'a size is a whole number of bytes with an optional K, M, G or T (powers of 1024), e.g. :10G' });
    }
    return { path: part };
  });
  return { name, extents };
}
