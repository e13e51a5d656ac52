import { createHash, type Hash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import type { Sha256Reply, Sha256Request } from './sha256-thread.js';

/**
 * The SHA-256 thread (started by Sha256Thread): hashes each stream's bytes
 * in the order they come and answers every request, in order. The bytes are
 * shared memory it only reads, or a copy handed over.
 */
if (!parentPort) throw new Error('sha256.worker.js runs as a worker thread');
const port = parentPort;
const open = new Map<number, Hash>();

port.on('message', (m: Sha256Request) => {
  if (m.op === 'drop') {
    open.delete(m.stream);
    return;
  }
  let reply: Sha256Reply;
  try {
    let h = open.get(m.stream);
    if (!h) open.set(m.stream, (h = createHash('sha256')));
    if (m.op === 'update') {
      h.update(new Uint8Array(m.buf, m.offset, m.length));
      reply = { op: 'updated' };
    } else {
      open.delete(m.stream);
      reply = { op: 'digest', hex: h.digest('hex') };
    }
  } catch (e) {
    reply = { op: 'error', error: (e as Error).message ?? String(e) };
  }
  port.postMessage(reply);
});
