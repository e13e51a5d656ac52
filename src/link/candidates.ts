import { JshipError } from '../core/errors.js';
import { parseHostPort, type HostPort } from '../io/sockets.js';

/** A secondary site the primary may push to; lower priority numbers are tried first (§0130-0133). */
export interface Candidate extends HostPort {
  address: string;
  priority: number;
}

/**
 * The --candidates file: JSON, a list of {"address": "HOST:PORT",
 * "priority": N}. Every entry is checked; duplicates are refused.
 */
export function parseCandidates(text: string, where: string): Candidate[] {
  const fail = (why: string): never => {
    throw new JshipError('USAGE', `${where}: ${why}`, { hint: 'write a JSON list like [{"address": "192.0.2.10:7070", "priority": 1}, {"address": "192.0.2.20:7070", "priority": 2}]' });
  };
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    return fail(`not JSON (${(e as Error).message})`);
  }
  if (!Array.isArray(v) || v.length === 0) return fail('not a non-empty JSON list');
  const out = v.map((x: unknown, i): Candidate => {
    const o = x as Record<string, unknown>;
    if (typeof o !== 'object' || o === null || typeof o.address !== 'string') return fail(`entry ${i + 1} has no "address"`);
    const priority = o.priority ?? i + 1;
    if (typeof priority !== 'number' || !Number.isSafeInteger(priority)) return fail(`entry ${i + 1}: "priority" is not an integer`);
    let at: HostPort;
    try {
      at = parseHostPort(o.address, `entry ${i + 1}: address`);
    } catch (e) {
      return fail((e as Error).message);
    }
    return { ...at, address: o.address, priority };
  });
  const seen = new Set<string>();
  for (const c of out) {
    if (seen.has(c.address)) fail(`${c.address} is listed twice`);
    seen.add(c.address);
  }
  return out.sort((a, b) => a.priority - b.priority);
}
