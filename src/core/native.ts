import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/**
 * A napi-rs package's native binding. On glibc Linux its prebuilt platform
 * package (`PKG-linux-ARCH-gnu`, installed beside it) is required straight
 * away: the package's own loader first tells glibc from musl, by
 * `process.report.getReport()` (`@napi-rs/blake-hash`: 5 ms in a bare
 * process, 16 ms in a link receiver's) or by reading `/usr/bin/ldd` (each
 * thread that loads `@node-rs/crc32`). On musl the glibc binary fails to
 * load, and the package's loader does what it always did; elsewhere it is
 * the only way in.
 */
export function loadNative(pkg: string): unknown {
  if (process.platform === 'linux' && (process.arch === 'x64' || process.arch === 'arm64')) {
    try {
      return require(`${pkg}-linux-${process.arch}-gnu`);
    } catch {
      // Not glibc, or not installed: the loader finds what is.
    }
  }
  return require(pkg);
}
