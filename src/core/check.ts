/** One condition `jship check` tests: what it is, whether it holds, and what was found. */
export interface Check {
  name: string;
  ok: boolean;
  message: string;
}

/** A duration for people: 42 s, 3.5 min, 2.1 h, 4.0 d. */
export function formatDuration(sec: number | null): string {
  if (sec === null) return '?';
  if (sec < 120) return `${sec.toFixed(sec < 10 ? 1 : 0)} s`;
  if (sec < 7200) return `${(sec / 60).toFixed(1)} min`;
  if (sec < 172800) return `${(sec / 3600).toFixed(1)} h`;
  return `${(sec / 86400).toFixed(1)} d`;
}
