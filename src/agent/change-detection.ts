/**
 * What a run learns without scanning the table: whether the local database went back or moved
 * (then the whole table is verified), and whether rows may have disappeared locally, so that
 * counts must be compared (an O(n) count, then a bisection only where they differ).
 *
 * Rows that disappear leave no new version behind, so the version scan cannot see them. Two kinds:
 *  - deletes (in any partition): the statistics' delete counter moves, or their identity changes
 *    (a partition attached, detached or truncated; statistics reset);
 *  - key changes (an UPDATE of a primary key value): no delete is counted, but the new key reaches
 *    the server as a new row. So when, over a run, the server inserted more rows than the local
 *    insert counter grew, some of them were key changes, and the old keys must go. Statistics
 *    published late err on the safe side (fewer local inserts: a count that finds nothing).
 * An idle run reads a few counters: O(1) per partition, never a count.
 *
 * And whether the run is idle: nothing in the snapshot the server may lack, so the settle can
 * travel on the declaration (protocol/idle-settle.ts) and the run makes one request.
 */

import type { IdleSettle, TableSummary } from '../shared/protocol.js';
import type { ChangeCounters } from './local/local-catalog.js';
import type { TableStateRow } from './local/table-state-store.js';
import type { Remote, UploadOptions } from './remote.js';

export interface CountCheckReasons {
  /** The delete counter or the statistics' identity moved since the last comparison. */
  deletes: boolean;
  /** The server inserted more rows than the local insert counter grew: keys changed. */
  keyChanges: boolean;
}

/**
 * Why the counts should be compared, from the counters read before this run's snapshot, the
 * state of the last run, and the rows the server inserted in this run's uploads.
 */
export function countCheckReasons(state: TableStateRow, counters: ChangeCounters, serverInserted: number): CountCheckReasons {
  const deletes = state.lastDeleteCount !== counters.deletes || state.lastStatsIdentity !== counters.identity;
  const localInserted = state.lastInsertCount === null ? 0n : BigInt(counters.inserts) - BigInt(state.lastInsertCount);
  return { deletes, keyChanges: BigInt(serverInserted) > localInserted };
}

/**
 * Whether the horizon the local state remembers settling is the server's: the same settled version
 * and, when the state kept it (states saved before did not), the same settled xmax.
 */
function sameSettle(state: TableStateRow, server: { settledVersion: string; settledXmax: string | null }): boolean {
  if ((state.lastSettledVersion ?? '0') !== server.settledVersion) return false;
  return state.lastSettledXmax === null || server.settledXmax === null || state.lastSettledXmax === server.settledXmax;
}

/**
 * Why the whole table must be verified because the local database is not where the server thinks
 * it is, or null. Each of these is something a busy database cannot outrun:
 *  - moved: rows carried versions from another cluster's transaction ids (a pg_dump/pg_restore
 *    into a new initdb) and were re-stamped; the server holds them with the old versions;
 *  - pending: such a verification was owed and has not finished yet;
 *  - state_behind: the horizon the local database remembers settling is not the server's: the
 *    local database went back (a file-level backup or PITR restore: tidemark's own state went back
 *    with it), or a settle's answer was lost (the safe side). The xmax is compared too: a long
 *    transaction (in any database of the cluster) holds the settled version still across settles,
 *    so a backup taken while it ran would remember the very version the server holds;
 *  - xid_behind: the local transaction ids are below the server's settled horizon.
 */
export function restoreReason(
  state: TableStateRow,
  summary: TableSummary,
  snapshotXmin: string,
  rebasedRows: number,
): 'moved' | 'pending' | 'state_behind' | 'xid_behind' | null {
  if (rebasedRows > 0) return 'moved';
  if (state.fullVerifyPending) return 'pending';
  if (!sameSettle(state, summary)) return 'state_behind';
  if (BigInt(snapshotXmin) < BigInt(summary.settledVersion)) return 'xid_behind';
  return null;
}

/**
 * The run's remote, adding up the rows the server inserted (new keys) in the answers to uploads;
 * everything else passes through (a Proxy, so methods added to Remote pass through too).
 * `onFirstInsert` runs before the first answer with inserted rows is counted: a run that fails
 * after it cannot tell next run how many there were, so the caller marks the counts to be compared.
 */
export function countingInserts(remote: Remote, onFirstInsert: () => Promise<void>): { remote: Remote; inserted: () => number } {
  let inserted = 0;
  let marked: Promise<void> | null = null;
  const upload: Remote['upload'] = async (table, rows, options: UploadOptions) => {
    const result = await remote.upload(table, rows, options);
    if (result.rowsInserted > 0) {
      marked ??= onFirstInsert();
      await marked;
    }
    inserted += result.rowsInserted;
    return result;
  };
  const counted = new Proxy(remote, {
    get(target, prop) {
      if (prop === 'upload') return upload;
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { remote: counted, inserted: () => inserted };
}

/** What a process remembers of the server's state of a table after its last run there. */
export type KnownState = Pick<TableSummary, 'settledVersion' | 'settledXmax' | 'settledXip' | 'maxVersion'>;

/** The server's state of each table (by label) as this process's runs last saw it, per TableSync's dependencies. */
const known = new WeakMap<object, Map<string, KnownState>>();

export function knownStates(owner: object): Map<string, KnownState> {
  let m = known.get(owner);
  if (!m) {
    m = new Map();
    known.set(owner, m);
  }
  return m;
}

/**
 * The idle settle of a run, or null when the run must first ask the server where it stands. A run
 * is idle when, against the state its last run left on the server (`last`): no row of the snapshot
 * is in what a run would upload (upload-ranges.ts: a version at or above the settled xmax, or one of
 * the settled in-progress transactions), the server holds no version above the snapshot's, and
 * nothing else is owed (a restore, an upload to resume, a requested verification). A transaction
 * open elsewhere (another database of the cluster, a long report) stays in the in-progress list run
 * after run without making runs busy: only rows it wrote, once committed, do. The server applies the
 * settle only if its state is still `last` (one conditional UPDATE), so a stale memory costs a
 * fallback, never a wrong horizon.
 */
export async function idleSettleFor(
  last: KnownState | undefined,
  state: TableStateRow,
  snapshot: { xmin: string; xmax: string; xip: string[] },
  localMax: string | null,
  owed: boolean,
  hasVersionIn: (versions: string[]) => Promise<boolean>,
): Promise<IdleSettle | null> {
  if (!last || owed || state.fullVerifyPending || state.uploadResume !== null) return null;
  if (!sameSettle(state, last) || BigInt(snapshot.xmin) < BigInt(last.settledVersion)) return null;
  if (last.maxVersion !== null && (localMax === null || BigInt(last.maxVersion) > BigInt(localMax))) return null;
  const from = BigInt(last.settledXmax ?? last.settledVersion);
  if (localMax !== null && BigInt(localMax) >= from) return null;
  // Only a row at or above the lowest in-progress id can carry one of them (one index probe).
  const pending = last.settledXip.filter((x) => BigInt(x) < from && localMax !== null && BigInt(x) <= BigInt(localMax));
  if (pending.length > 0 && (await hasVersionIn(pending))) return null;
  return {
    expected: { settledVersion: last.settledVersion, settledXmax: last.settledXmax, settledXip: last.settledXip },
    settle: { settledVersion: snapshot.xmin, settledXmax: snapshot.xmax, settledXip: snapshot.xip },
    maxVersion: localMax,
  };
}
