/**
 * A state change or occurrence an operator may want to see or alert on: a
 * stable name (`journal-full`, `client-connected`, `export-failed`, …) and
 * flat fields. Long-running verbs print one per line: JSON under --json,
 * else `eventLine`.
 */
export interface JshipEvent {
  event: string;
  [field: string]: unknown;
}

export type EventLog = (e: JshipEvent) => void;

/** key=value, quoted when it holds spaces or quotes; nested objects as dotted keys (no JSON in human text). */
function fields(prefix: string, v: unknown, out: string[]): void {
  if (v === undefined) return;
  if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) fields(prefix ? `${prefix}.${k}` : k, x, out);
    return;
  }
  const text = Array.isArray(v) ? v.map(String).join(',') : String(v);
  out.push(`${prefix}=${text === '' || /[\s"=]/.test(text) ? JSON.stringify(text) : text}`);
}

/** One readable line: `EVENT key=value ...` (logfmt). */
export function eventLine(e: JshipEvent): string {
  const { event, ...rest } = e;
  const out: string[] = [];
  fields('', rest, out);
  return out.length ? `${event} ${out.join(' ')}` : event;
}
