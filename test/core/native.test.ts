import { describe, expect, it } from 'vitest';
import { distUrl, nodeModule } from '../helpers.js';

// The napi-rs loaders tell glibc from musl before they load a binary: process.report.getReport() (5-16 ms) or a
// read of /usr/bin/ldd in each thread. On glibc Linux jship loads the platform package straight away.
describe('native bindings (core/native.ts)', () => {
  it('on glibc Linux, loads BLAKE3 and CRC-32 without the loaders\' libc checks, and they work', () => {
    const r = nodeModule(`import fs from 'node:fs';
      const asked = [];
      process.report.getReport = () => { asked.push('getReport'); return { header: { glibcVersionRuntime: '2.36' } }; };
      const read = fs.readFileSync;
      fs.readFileSync = (p, ...rest) => { if (String(p).includes('ldd')) asked.push('ldd'); return read(p, ...rest); };
      const { loadNative } = await import(${distUrl('core/native.js')});
      const b = loadNative('@napi-rs/blake-hash');
      const h = new b.Blake3Hasher();
      h.update(Buffer.from('abc'));
      const { CRC32_IMPLEMENTATION, crc32 } = await import(${distUrl('core/crc32.js')});
      console.log(JSON.stringify({ asked, blake3: h.digest('hex'), crc: CRC32_IMPLEMENTATION, check: crc32(Buffer.from('123456789')).toString(16) }));`);
    expect(r.status, r.err).toBe(0);
    expect(JSON.parse(r.out)).toEqual({ asked: [], blake3: '6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85', crc: 'node-rs', check: 'cbf43926' });
  });
});
