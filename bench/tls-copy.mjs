// The link benchmark's peer: a plain TLS socket copy of a file, with the same
// cipher and pre-shared key as the link, the receiver fsyncing every
// FSYNC_EVERY bytes (as often as the link's receiver does: once per link tape).
// With STREAMS > 1 the file goes as that many byte ranges over as many
// connections at once (each received into its own file, fsynced as often).
//   node tls-copy.mjs recv PORT_FILE OUT_FILE SIZE FSYNC_EVERY KEY_HEX [STREAMS]
//   node tls-copy.mjs send PORT IN_FILE KEY_HEX [STREAMS]
import { closeSync, createReadStream, fsyncSync, openSync, statSync, writeFileSync, writeSync } from 'node:fs';
import tls from 'node:tls';

const TLS = { ciphers: 'ECDHE-PSK-CHACHA20-POLY1305', minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' };
const [mode, ...args] = process.argv.slice(2);
if (mode === 'recv') {
  const [portFile, out, size, every, keyHex, streams = '1'] = args;
  const key = Buffer.from(keyHex, 'hex');
  let got = 0;
  let accepted = 0;
  const open = [];
  const server = tls.createServer({ ...TLS, pskCallback: () => key }, (s) => {
    const fd = openSync(Number(streams) > 1 ? `${out}.${accepted}` : out, 'w');
    accepted++;
    open.push({ s, fd });
    let since = 0;
    s.on('data', (chunk) => {
      writeSync(fd, chunk);
      got += chunk.length;
      since += chunk.length;
      if (since >= Number(every)) { fsyncSync(fd); since = 0; }
      if (got === Number(size)) {
        for (const o of open) {
          fsyncSync(o.fd);
          closeSync(o.fd);
          o.s.end('done');
        }
        server.close();
      }
    });
  });
  server.listen(0, '127.0.0.1', () => writeFileSync(portFile, String(server.address().port)));
} else {
  const [port, file, keyHex, streams = '1'] = args;
  const key = Buffer.from(keyHex, 'hex');
  const n = Number(streams);
  const size = statSync(file).size;
  for (let i = 0; i < n; i++) {
    const start = Math.floor((size * i) / n);
    const end = Math.floor((size * (i + 1)) / n);
    const s = tls.connect({ ...TLS, host: '127.0.0.1', port: Number(port), pskCallback: () => ({ psk: key, identity: 'bench' }), checkServerIdentity: () => undefined }, () => {
      if (end > start) createReadStream(file, { start, end: end - 1, highWaterMark: 1 << 20 }).pipe(s, { end: false });
    });
    s.on('data', () => s.destroy());
  }
}
