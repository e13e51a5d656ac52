// A TCP relay that holds every chunk DELAY_MS before passing it on, each way:
// a path with a round trip of 2 × DELAY_MS for the link benchmark. The kernel
// here has no netem qdisc (`tc qdisc add … netem` answers "Specified qdisc
// kind is unknown"), so the delay is made in user space. At most LIMIT bytes
// wait in each direction (the path's buffer): past it the sender is paused,
// as a full path would stall it.
//   node delay-relay.mjs PORT_FILE TARGET_PORT DELAY_MS
import net from 'node:net';
import { writeFileSync } from 'node:fs';

const [portFile, targetPort, delayMs] = process.argv.slice(2);
const DELAY = Number(delayMs);
const LIMIT = 64 * 1024 * 1024;

/** Passes `from`'s bytes to `to`, each chunk DELAY ms after it arrived, in order. */
function delayed(from, to) {
  const queue = [];
  let waiting = 0;
  let timer = null;
  let ended = false;
  const flush = () => {
    timer = null;
    const now = Date.now();
    while (queue.length > 0 && queue[0].due <= now) {
      const { chunk } = queue.shift();
      waiting -= chunk.length;
      to.write(chunk);
    }
    if (waiting < LIMIT / 2) from.resume();
    if (queue.length > 0) timer = setTimeout(flush, queue[0].due - now);
    else if (ended) to.end();
  };
  from.on('data', (chunk) => {
    queue.push({ chunk, due: Date.now() + DELAY });
    waiting += chunk.length;
    if (waiting > LIMIT) from.pause();
    timer ??= setTimeout(flush, DELAY);
  });
  from.on('end', () => {
    ended = true;
    timer ??= setTimeout(flush, DELAY);
  });
  from.on('error', () => to.destroy());
}

const server = net.createServer((client) => {
  const upstream = net.connect(Number(targetPort), '127.0.0.1');
  client.setNoDelay(true);
  upstream.setNoDelay(true);
  delayed(client, upstream);
  delayed(upstream, client);
  // A side that closes is closed on the other once what it sent last has been passed on.
  upstream.on('close', () => setTimeout(() => client.destroy(), DELAY + 50));
  client.on('close', () => setTimeout(() => upstream.destroy(), DELAY + 50));
});
server.listen(0, '127.0.0.1', () => writeFileSync(portFile, String(server.address().port)));
