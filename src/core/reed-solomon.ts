/**
 * Reed-Solomon erasure coding over GF(2^8) (polynomial 0x11d), systematic:
 * the encoding matrix is a Vandermonde matrix times the inverse of its top
 * square, so data shards pass unchanged and any `dataShards` of the
 * `dataShards + parityShards` shards give back the data (the construction of
 * Backblaze's JavaReedSolomon and of reed-solomon-erasure). Pure: no I/O.
 */

const EXP = new Uint8Array(512);
const LOG = new Uint8Array(256);
{
  let x = 1;
  for (let i = 0; i < 255; i++) {
    EXP[i] = x;
    LOG[x] = i;
    x <<= 1;
    if (x & 0x100) x ^= 0x11d;
  }
  for (let i = 255; i < 512; i++) EXP[i] = EXP[i - 255] as number;
}

/** a·b for every a, b: row a is the multiplication table of a (64 KiB). */
const MUL = new Uint8Array(256 * 256);
for (let a = 1; a < 256; a++) for (let b = 1; b < 256; b++) MUL[a * 256 + b] = EXP[(LOG[a] as number) + (LOG[b] as number)] as number;

const mul = (a: number, b: number): number => MUL[a * 256 + b] as number;
const inv = (a: number): number => EXP[255 - (LOG[a] as number)] as number;

/** Data and parity shards together are at most 256 (the field's size). */
export const MAX_SHARDS = 256;

type Matrix = Uint8Array[];

function invert(m: Matrix): Matrix {
  const n = m.length;
  const a: Matrix = m.map((row, i) => {
    const r = new Uint8Array(2 * n);
    r.set(row);
    r[n + i] = 1;
    return r;
  });
  for (let c = 0; c < n; c++) {
    let p = c;
    while (p < n && (a[p] as Uint8Array)[c] === 0) p++;
    if (p === n) throw new Error('Reed-Solomon: singular matrix');
    [a[c], a[p]] = [a[p] as Uint8Array, a[c] as Uint8Array];
    const row = a[c] as Uint8Array;
    const s = inv(row[c] as number);
    for (let j = 0; j < 2 * n; j++) row[j] = mul(row[j] as number, s);
    for (let r = 0; r < n; r++) {
      const other = a[r] as Uint8Array;
      const f = other[c] as number;
      if (r === c || f === 0) continue;
      for (let j = 0; j < 2 * n; j++) other[j] = (other[j] as number) ^ mul(f, row[j] as number);
    }
  }
  return a.map((r) => r.slice(n));
}

const matrices = new Map<string, Matrix>();

/** The systematic encoding matrix: `k + m` rows of `k` coefficients, the top `k` the identity. */
function encodingMatrix(k: number, m: number): Matrix {
  const key = `${k}:${m}`;
  const hit = matrices.get(key);
  if (hit) return hit;
  const vander: Matrix = [];
  for (let r = 0; r < k + m; r++) {
    const row = new Uint8Array(k);
    for (let c = 0; c < k; c++) row[c] = c === 0 ? 1 : r === 0 ? 0 : EXP[((LOG[r] as number) * c) % 255] as number;
    vander.push(row);
  }
  const top = invert(vander.slice(0, k));
  const out = vander.map((row) => {
    const r = new Uint8Array(k);
    for (let c = 0; c < k; c++) {
      let v = 0;
      for (let j = 0; j < k; j++) v ^= mul(row[j] as number, (top[j] as Uint8Array)[c] as number);
      r[c] = v;
    }
    return r;
  });
  matrices.set(key, out);
  return out;
}

/** out ^= coef · src (src may be shorter than out: its missing bytes are zeros). */
function addScaled(out: Uint8Array, src: Uint8Array, coef: number): void {
  if (coef === 0) return;
  const n = Math.min(out.length, src.length);
  if (coef === 1) {
    for (let i = 0; i < n; i++) out[i] = (out[i] as number) ^ (src[i] as number);
    return;
  }
  const t = MUL.subarray(coef * 256, coef * 256 + 256);
  for (let i = 0; i < n; i++) out[i] = (out[i] as number) ^ (t[src[i] as number] as number);
}

/** out0 ^= c0 · src and out1 ^= c1 · src, in one pass over src. */
function addScaled2(out0: Uint8Array, out1: Uint8Array, src: Uint8Array, c0: number, c1: number): void {
  const n = Math.min(out0.length, src.length);
  const t0 = MUL.subarray(c0 * 256, c0 * 256 + 256);
  const t1 = MUL.subarray(c1 * 256, c1 * 256 + 256);
  for (let i = 0; i < n; i++) {
    const x = src[i] as number;
    out0[i] = (out0[i] as number) ^ (t0[x] as number);
    out1[i] = (out1[i] as number) ^ (t1[x] as number);
  }
}

function checkCounts(k: number, m: number): void {
  if (!Number.isSafeInteger(k) || !Number.isSafeInteger(m) || k < 1 || m < 1 || k + m > MAX_SHARDS) throw new Error(`Reed-Solomon: ${k} data and ${m} parity shards (1.., at most ${MAX_SHARDS} in all)`);
}

/** The `parityShards` parity shards of `data`, each `shardBytes` long (shorter data shards count as padded with zeros). */
export function encodeParity(data: ReadonlyArray<Uint8Array>, shardBytes: number, parityShards: number): Buffer[] {
  checkCounts(data.length, parityShards);
  const m = encodingMatrix(data.length, parityShards);
  const out: Buffer[] = [];
  for (let p = 0; p < parityShards; p++) out.push(Buffer.alloc(shardBytes));
  // Two parity rows a pass over each data shard: each data byte is read once for both (1.35× one row a pass).
  for (let p = 0; p < parityShards; p += 2) {
    const r0 = m[data.length + p] as Uint8Array;
    const r1 = m[data.length + p + 1];
    data.forEach((d, j) => {
      if (r1) addScaled2(out[p] as Buffer, out[p + 1] as Buffer, d, r0[j] as number, r1[j] as number);
      else addScaled(out[p] as Buffer, d, r0[j] as number);
    });
  }
  return out;
}

/**
 * Every data shard (each `shardBytes` long, padded with zeros) from the
 * shards present — data then parity, null where missing — or null when
 * fewer than `data.length` are present.
 */
export function reconstructData(data: ReadonlyArray<Uint8Array | null>, parity: ReadonlyArray<Uint8Array | null>, shardBytes: number): Buffer[] | null {
  const k = data.length;
  checkCounts(k, parity.length);
  const rows: number[] = [];
  const shards: Uint8Array[] = [];
  [...data, ...parity].forEach((s, i) => {
    if (s && rows.length < k) {
      rows.push(i);
      shards.push(s);
    }
  });
  if (rows.length < k) return null;
  const m = encodingMatrix(k, parity.length);
  const decode = invert(rows.map((r) => m[r] as Uint8Array));
  return data.map((d, i) => {
    const out = Buffer.alloc(shardBytes);
    if (d) {
      out.set(d.subarray(0, shardBytes));
      return out;
    }
    const row = decode[i] as Uint8Array;
    shards.forEach((s, j) => addScaled(out, s, row[j] as number));
    return out;
  });
}
