import { JshipError } from '../core/errors.js';

/**
 * Messages of the control socket: one JSON object per line. Sequence numbers
 * and ns timestamps pass 2^53, so bigints travel tagged as {"$big":"123"}
 * and come back as bigints.
 */
export type ControlRequest = { op: string; args: Record<string, unknown> };
export type ControlReply =
  | { type: 'progress'; done: number; total: number }
  | { type: 'result'; result: unknown }
  | { type: 'error'; code: string; message: string; hint?: string; details?: unknown };

/** No control message is anywhere near this long; a longer line is refused. */
export const MAX_CONTROL_LINE = 1024 * 1024;

export function encodeControl(msg: ControlRequest | ControlReply): string {
  return `${JSON.stringify(msg, (_k, v: unknown) => (typeof v === 'bigint' ? { $big: v.toString() } : v))}\n`;
}

export function decodeControl(line: string): unknown {
  try {
    return JSON.parse(line, (_k, v: unknown) => {
      if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
        const keys = Object.keys(v);
        const big = (v as { $big?: unknown }).$big;
        if (keys.length === 1 && typeof big === 'string' && /^-?\d+$/.test(big)) return BigInt(big);
      }
      return v;
    });
  } catch (e) {
    throw new JshipError('CONTROL_PROTOCOL', `control message is not JSON: ${(e as Error).message}`, { hint: 'send one JSON object per line' });
  }
}

export function asRequest(v: unknown): ControlRequest {
  if (v === null || typeof v !== 'object') throw new JshipError('CONTROL_PROTOCOL', 'control request is not an object', { hint: 'send {"op": ..., "args": {...}}' });
  const { op, args } = v as { op?: unknown; args?: unknown };
  if (typeof op !== 'string') throw new JshipError('CONTROL_PROTOCOL', 'control request has no "op" string', { hint: 'send {"op": ..., "args": {...}}' });
  if (args !== undefined && (args === null || typeof args !== 'object' || Array.isArray(args))) {
    throw new JshipError('CONTROL_PROTOCOL', 'control request "args" is not an object', { hint: 'send {"op": ..., "args": {...}}' });
  }
  return { op, args: (args ?? {}) as Record<string, unknown> };
}

/** Splits a byte stream into lines, refusing one longer than MAX_CONTROL_LINE. */
export class LineSplitter {
  #buf = '';
  push(chunk: string): string[] {
    this.#buf += chunk;
    const parts = this.#buf.split('\n');
    this.#buf = parts.pop() ?? '';
    if (this.#buf.length > MAX_CONTROL_LINE) {
      throw new JshipError('CONTROL_PROTOCOL', `control line longer than ${MAX_CONTROL_LINE} bytes`, { hint: 'control messages are small JSON objects' });
    }
    return parts.filter((p) => p.length > 0);
  }
}
