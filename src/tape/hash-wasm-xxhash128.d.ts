// hash-wasm's XXH3-128 alone (its build of one algorithm): the package's index
// compiles and loads every algorithm, a tenth of a second in each thread.
declare module 'hash-wasm/dist/xxhash128.umd.min.js' {
  import type { createXXHash128 } from 'hash-wasm';

  const xxhash128: { createXXHash128: typeof createXXHash128 };
  export default xxhash128;
}
