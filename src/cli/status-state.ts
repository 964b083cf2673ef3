/**
 * `tidemark status`'s verdict per table, and its exit code: 0 when every table is in sync, 1 when
 * any is behind, quarantined or in error (a server that is down, or refuses the key, puts every
 * table in error). The `state` field of `status --json` (README, Operating a fleet).
 */
import type { TableStatus } from '../agent/agent.js';

export type StatusState = 'in_sync' | 'behind' | 'quarantined' | 'error';

export function statusState(r: TableStatus): StatusState {
  if (r.error) return 'error';
  if (r.quarantined.length > 0) return 'quarantined';
  const level = r.local && r.remote && r.local.rowCount === r.remote.rowCount && r.local.maxVersion === r.remote.maxVersion;
  return level ? 'in_sync' : 'behind';
}

/** The one line `status` ends with when some table is not in sync, or null. */
export function statusProblem(rows: TableStatus[]): string | null {
  const counts = new Map<StatusState, number>();
  for (const r of rows) counts.set(statusState(r), (counts.get(statusState(r)) ?? 0) + 1);
  const bad = (['error', 'quarantined', 'behind'] as const).filter((s) => counts.has(s)).map((s) => `${counts.get(s)} ${s}`);
  if (bad.length === 0) return null;
  const first = rows.find((r) => r.error)?.error;
  return `${rows.length - (counts.get('in_sync') ?? 0)} of ${rows.length} table(s) not in sync (${bad.join(', ')})${first ? `; first error: ${first}` : ''}`;
}
