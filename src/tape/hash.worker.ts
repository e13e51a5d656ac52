import { parentPort } from 'node:worker_threads';
import type { HashReply, HashRequest } from './hash-thread.js';
import { newHasher, type Hasher } from './tape-hash.js';

/**
 * The hash thread (started by HashThread): hashes each stream's bytes in
 * the order they come, with the stream's algorithm, and answers every
 * request, in order. The bytes are shared memory it only reads, or a copy
 * handed over.
 */
if (!parentPort) throw new Error('hash.worker.js runs as a worker thread');
const port = parentPort;
const open = new Map<number, Hasher>();

port.on('message', (m: HashRequest) => {
  if (m.op === 'drop') {
    open.delete(m.stream);
    return;
  }
  let reply: HashReply;
  try {
    let h = open.get(m.stream);
    if (!h) open.set(m.stream, (h = newHasher(m.algorithm)));
    if (m.op === 'update') {
      h.update(new Uint8Array(m.buf, m.offset, m.length));
      reply = { op: 'updated' };
    } else {
      open.delete(m.stream);
      reply = { op: 'digest', hex: h.digest() };
    }
  } catch (e) {
    reply = { op: 'error', error: (e as Error).message ?? String(e) };
  }
  port.postMessage(reply);
});
