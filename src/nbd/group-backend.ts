import { isJshipError } from '../core/errors.js';
import type { JournalGroup } from '../journal/journal-group.js';
import type { Extent, NbdBackend, NbdExport } from './export.js';
import { Errno, STATE_ZERO } from './protocol.js';

const MAX_BLOCK = 32 * 1024 * 1024;
/** Block status looks at this much per request, in granules of STATUS_GRAIN. */
const STATUS_WINDOW = 4 * 1024 * 1024;
const STATUS_GRAIN = 64 * 1024;
const CACHE_PIECE = 1024 * 1024;
const ZEROES = Buffer.alloc(STATUS_GRAIN);

/**
 * The volumes of a journal group as NBD exports. Every write, write-zeroes
 * and trim goes through the group: journaled with its sequence number and
 * timestamp before it is replied to; FUA and FLUSH make journal and PVOLs
 * durable. Reads come from the PVOLs.
 */
export function groupBackend(group: JournalGroup): NbdBackend {
  const dataHalf = Math.floor(group.journal.layout.dataSize / 2);
  const maxBlock = Math.max(4096, Math.min(MAX_BLOCK, dataHalf - (dataHalf % 4096)));
  const exports: NbdExport[] = group.volumes.map((v, i) => ({
    name: v.name,
    description: `jship journal group ${group.config.groupId}, volume ${v.name}`,
    size: v.size,
    read: (offset, length) => group.read(i, offset, length),
    write: async (offset, data, fua) => {
      await group.write(i, offset, data, { fua });
    },
    writeZeroes: async (offset, length, fua) => {
      await group.writeZeroes(i, offset, length, { fua });
    },
    trim: async (offset, length, fua) => {
      await group.trim(i, offset, length, { fua });
    },
    cache: async (offset, length) => {
      const buf = Buffer.allocUnsafe(Math.min(CACHE_PIECE, length));
      for (let done = 0; done < length; done += buf.length) {
        const n = Math.min(buf.length, length - done);
        await group.read(i, offset + done, n, buf.subarray(0, n));
      }
    },
    blockStatus: async (offset, length) => {
      // Everything is allocated (the PVOLs are written in full); ranges that read as zeroes say so.
      const len = Math.min(length, STATUS_WINDOW);
      const data = await group.read(i, offset, len);
      const extents: Extent[] = [];
      for (let pos = 0; pos < len;) {
        const n = Math.min(STATUS_GRAIN - ((offset + pos) % STATUS_GRAIN), len - pos);
        const flags = data.subarray(pos, pos + n).equals(ZEROES.subarray(0, n)) ? STATE_ZERO : 0;
        const last = extents[extents.length - 1];
        if (last && last.flags === flags) last.length += n;
        else extents.push({ length: n, flags });
        pos += n;
      }
      return extents;
    },
  }));
  return {
    exports,
    maxBlock,
    flush: () => group.flush(),
    errno: (e) => {
      const message = e instanceof Error ? e.message : String(e);
      if (isJshipError(e, 'JOURNAL_FULL')) return { errno: Errno.ENOSPC, message };
      if (isJshipError(e, 'VOLUME_OUT_OF_RANGE') || isJshipError(e, 'RECORD_TOO_LARGE')) return { errno: Errno.EINVAL, message };
      if (isJshipError(e, 'GROUP_CLOSED')) return { errno: Errno.ESHUTDOWN, message };
      // A fenced group is no longer the primary: a write is not permitted (the client sees EPERM, not a disk failure).
      if (isJshipError(e, 'GROUP_FENCED')) return { errno: Errno.EPERM, message };
      return { errno: Errno.EIO, message };
    },
  };
}
