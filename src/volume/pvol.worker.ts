import { writeFullySync } from '../io/files.js';
import { parentPort } from 'node:worker_threads';
import type { PvolBatch, PvolReply } from './pvol-writer.js';

/**
 * The PVOL writer's thread (started by PvolWriter): each message is a batch
 * of small writes whose data was copied into one transferred buffer; they
 * are written in order with pwrite, and one reply says the batch is done.
 */
const port = parentPort;
if (!port) throw new Error('pvol.worker.js runs as a worker thread');

port.on('message', ({ id, ops, buf }: PvolBatch) => {
  try {
    for (let i = 0; i < ops.length; i += 4) {
      const [fd, pos, off, len] = ops.slice(i, i + 4) as [number, number, number, number];
      writeFullySync(fd, new Uint8Array(buf, off, len), pos);
    }
    port.postMessage({ id } satisfies PvolReply);
  } catch (e) {
    port.postMessage({ id, error: (e as Error).message, code: (e as NodeJS.ErrnoException).code } satisfies PvolReply);
  }
});
