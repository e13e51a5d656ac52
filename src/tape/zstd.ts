import { createRequire } from 'node:module';
import type * as Binding from 'zstd-napi/binding.js';
import { MAX_FRAME_CONTENT } from '../core/zstd-frames.js';

/**
 * zstd, behind one file: the only module that loads zstd-napi (the frame
 * workers load it through this one too). Every frame jship writes declares
 * its content size and carries zstd's checksum.
 */
const require = createRequire(import.meta.url);
const binding = require('zstd-napi/binding.js') as typeof Binding;
let dctx: Binding.DCtx | undefined;

/**
 * Decompresses one whole frame (its header declares its size, within the
 * format's limit: every jship frame does), into `into` when it is large enough.
 */
export function decompressFrame(frame: Uint8Array, into?: ArrayBuffer, limit = MAX_FRAME_CONTENT): Buffer {
  const size = binding.getFrameContentSize(frame);
  if (size === null) throw new Error('the frame declares no content size');
  // Checked before anything is decompressed: a frame that declares more is never inflated (no decompression bombs).
  if (size > limit) throw new Error(`the frame declares ${size} bytes, more than the format's ${limit}-byte limit`);
  // A buffer of its own (never a slice of the shared pool): a worker hands it over whole.
  const out = into && into.byteLength >= size ? Buffer.from(into, 0, size) : Buffer.allocUnsafeSlow(size);
  dctx ??= new binding.DCtx();
  const n = dctx.decompress(out, frame);
  if (n !== size) throw new Error(`the frame declares ${size} bytes and holds ${n}`);
  return out;
}

/** Makes frames with a context and an output buffer kept from frame to frame. */
export class FrameCompressor {
  readonly #cctx = new binding.CCtx();
  #dst: Buffer = Buffer.alloc(0);

  constructor(level: number) {
    this.#cctx.setParameter(binding.CParameter.compressionLevel, level);
    this.#cctx.setParameter(binding.CParameter.checksumFlag, 1);
    this.#cctx.setParameter(binding.CParameter.contentSizeFlag, 1);
  }

  /** One frame of `content`: a view valid until the next call. */
  compress(content: Uint8Array): Buffer {
    const bound = binding.compressBound(content.length);
    if (this.#dst.length < bound) this.#dst = Buffer.allocUnsafeSlow(bound);
    return this.#dst.subarray(0, this.#cctx.compress2(this.#dst, content));
  }

  /** One frame of `content` written into `into` (at least zstd's bound for it; null when smaller): its length. */
  compressInto(into: Uint8Array, content: Uint8Array): number | null {
    if (into.length < binding.compressBound(content.length)) return null;
    return this.#cctx.compress2(into, content);
  }
}
