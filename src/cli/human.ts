/** Durations as the CLI prints them to people (`tidemark fleet`, `tidemark status`). */

/** A duration for people: 42s, 5m 3s, 2h 10m, 3d 4h; `-` when unknown. */
export function humanSeconds(seconds: number | null): string {
  if (seconds === null) return '-';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}
