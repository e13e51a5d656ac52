// The link benchmark's peer: a plain TLS socket copy of a file, with the same
// cipher and pre-shared key as the link, the receiver fsyncing every
// FSYNC_EVERY bytes (as often as the link's receiver does: once per link tape).
//   node tls-copy.mjs recv PORT_FILE OUT_FILE SIZE FSYNC_EVERY KEY_HEX
//   node tls-copy.mjs send PORT IN_FILE KEY_HEX
import { closeSync, createReadStream, fsyncSync, openSync, writeFileSync, writeSync } from 'node:fs';
import tls from 'node:tls';

const TLS = { ciphers: 'ECDHE-PSK-CHACHA20-POLY1305', minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' };
const [mode, ...args] = process.argv.slice(2);
if (mode === 'recv') {
  const [portFile, out, size, every, keyHex] = args;
  const key = Buffer.from(keyHex, 'hex');
  const fd = openSync(out, 'w');
  let got = 0;
  let since = 0;
  const server = tls.createServer({ ...TLS, pskCallback: () => key }, (s) => {
    s.on('data', (chunk) => {
      writeSync(fd, chunk);
      got += chunk.length;
      since += chunk.length;
      if (since >= Number(every)) { fsyncSync(fd); since = 0; }
      if (got === Number(size)) {
        fsyncSync(fd);
        closeSync(fd);
        s.end('done');
        server.close();
      }
    });
  });
  server.listen(0, '127.0.0.1', () => writeFileSync(portFile, String(server.address().port)));
} else {
  const [port, file, keyHex] = args;
  const key = Buffer.from(keyHex, 'hex');
  const s = tls.connect({ ...TLS, host: '127.0.0.1', port: Number(port), pskCallback: () => ({ psk: key, identity: 'bench' }), checkServerIdentity: () => undefined }, () => {
    createReadStream(file, { highWaterMark: 1 << 20 }).pipe(s, { end: false });
  });
  s.on('data', () => s.destroy());
}
