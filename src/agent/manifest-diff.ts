/**
 * Finds the rows that differ between the local snapshot and the remote copy by bisection over
 * (version, key) ranges (DESIGN.md, Manifests). Range boundaries come from the local side; both
 * sides summarise the same ranges with the same SQL (count, and in hash mode a sum of row hashes);
 * only ranges that differ are split again, level by level (one request per level), and ranges of
 * at most `rowThreshold` local rows are compared row by row.
 */
import pLimit from 'p-limit';

import type { Bound, KeyRange, ManifestMode, ManifestRow, RangeSummary } from '../shared/protocol.js';
import type { LocalSnapshot } from './local-database.js';
import type { HttpRemote } from './remote-client.js';

export interface DiffOptions {
  mode: ManifestMode;
  /** Ranges of at most this many local rows are compared row by row. */
  rowThreshold: number;
  /** Into how many sub-ranges a differing range is split. */
  fanout: number;
  /** Reports the share of the range verified so far (0..1). */
  onProgress?: (ratio: number) => void;
}

export const DEFAULT_DIFF: Omit<DiffOptions, 'mode'> = { rowThreshold: 64, fanout: 32 };

export interface RowDiff {
  /** Local rows absent remotely: key text forms. */
  missing: string[][];
  /** Remote rows absent locally: delete by key and version. */
  extra: { key: string[]; version: string }[];
  /** Same key, other version or content: upload the local row. */
  changed: string[][];
}

export interface DiffReport extends RowDiff {
  rangesCompared: number;
  mismatchedRanges: number;
  rowsCompared: number;
  roundTrips: number;
}

interface Pending {
  range: KeyRange;
  /** Local rows in the range, when known. */
  localCount: number;
}

const ROW_PAGE = 5000;

function same(a: RangeSummary | undefined, b: RangeSummary | undefined): boolean {
  return a !== undefined && b !== undefined && a.count === b.count && a.hash === b.hash;
}

/** Cuts a range at the boundaries: [lower, b1), [b1, b2), ..., [bn, upper). */
export function cut(range: KeyRange, boundaries: readonly Bound[]): KeyRange[] {
  if (boundaries.length === 0) return [range];
  const out: KeyRange[] = [{ ...range, upper: boundaries[0] as Bound }];
  for (let i = 0; i < boundaries.length; i++)
    out.push({ lower: boundaries[i] as Bound, upper: i + 1 < boundaries.length ? (boundaries[i + 1] as Bound) : range.upper });
  return out;
}

export async function diffRange(snap: LocalSnapshot, remote: HttpRemote, whole: KeyRange, options: DiffOptions): Promise<DiffReport> {
  const report: DiffReport = { missing: [], extra: [], changed: [], rangesCompared: 0, mismatchedRanges: 0, rowsCompared: 0, roundTrips: 0 };
  const table = snap.table.name;
  const total = Math.max(1, await snap.count(whole));
  let settled = 0; // local rows known equal or compared
  const progress = (n: number): void => {
    settled += n;
    options.onProgress?.(Math.min(1, settled / total));
  };

  // Level 0: the whole range in one summary (an identical table costs one pass and a few bytes).
  let level: Pending[] = [{ range: whole, localCount: total }];
  let first = true;
  const rowRanges: Pending[] = [];
  while (level.length > 0) {
    let ranges: KeyRange[];
    let counts: number[];
    if (first) {
      ranges = [whole];
      counts = [total];
      first = false;
    } else {
      ranges = [];
      counts = [];
      for (const p of level) {
        const bucketRows = Math.max(1, Math.ceil(p.localCount / options.fanout));
        const sub = cut(p.range, await snap.boundaries(p.range, bucketRows));
        for (const r of sub) {
          ranges.push(r);
          counts.push(-1);
        }
      }
    }
    const [local, remoteAnswer] = await Promise.all([snap.summarize(ranges, options.mode), remote.manifest(table, { mode: options.mode, ranges })]);
    report.roundTrips++;
    report.rangesCompared += ranges.length;
    const remoteRanges = remoteAnswer.ranges ?? [];
    const next: Pending[] = [];
    ranges.forEach((range, i) => {
      const l = local[i];
      const r = remoteRanges[i];
      const localCount = l?.count ?? counts[i] ?? 0;
      if (same(l, r)) {
        progress(localCount);
        return;
      }
      report.mismatchedRanges++;
      // Small locally: compare rows (the remote side is paged, so many extra remote rows are fine).
      if (localCount <= options.rowThreshold) rowRanges.push({ range, localCount });
      else next.push({ range, localCount });
    });
    level = next;
  }

  // Remote row pages go 4 at a time; the local snapshot is one connection, so its queries take turns.
  const limit = pLimit(4);
  const localTurn = pLimit(1);
  await Promise.all(
    rowRanges.map((p) =>
      limit(async () => {
        const [localRows, remoteRows] = await Promise.all([
          allRows((r, n) => localTurn(() => snap.rows(r, options.mode, n)), p.range),
          allRows(async (r, n) => {
            report.roundTrips++;
            const a = await remote.manifest(table, { mode: options.mode, rows: { range: r, limit: n } });
            return { rows: a.rows ?? [], more: a.more === true };
          }, p.range),
        ]);
        report.rowsCompared += localRows.length + remoteRows.length;
        compareRows(localRows, remoteRows, report);
        progress(p.localCount);
      }),
    ),
  );
  options.onProgress?.(1);
  return mergeMoved(report);
}

/**
 * A row whose version differs between the sides sits in different (version, key) ranges, so it is
 * seen as missing in one range and extra in another: it is one changed row (the upload replaces it).
 */
function mergeMoved(report: DiffReport): DiffReport {
  const missing = new Set(report.missing.map((k) => JSON.stringify(k)));
  const moved = new Set(report.extra.map((e) => JSON.stringify(e.key)).filter((k) => missing.has(k)));
  if (moved.size === 0) return report;
  report.missing = report.missing.filter((k) => !moved.has(JSON.stringify(k)));
  report.extra = report.extra.filter((e) => !moved.has(JSON.stringify(e.key)));
  for (const k of moved) report.changed.push(JSON.parse(k) as string[]);
  return report;
}

async function allRows(fetch: (range: KeyRange, limit: number) => Promise<{ rows: ManifestRow[]; more: boolean }>, range: KeyRange): Promise<ManifestRow[]> {
  const out: ManifestRow[] = [];
  let r = range;
  for (;;) {
    const page = await fetch(r, ROW_PAGE);
    out.push(...page.rows);
    const last = page.rows[page.rows.length - 1];
    if (!page.more || !last) return out;
    r = { lower: { version: last[1], key: last[0] }, lowerExclusive: true, upper: range.upper };
  }
}

/** Row-by-row comparison of one range. */
export function compareRows(local: readonly ManifestRow[], remote: readonly ManifestRow[], into: RowDiff): void {
  const remoteByKey = new Map(remote.map((r) => [JSON.stringify(r[0]), r]));
  for (const l of local) {
    const id = JSON.stringify(l[0]);
    const r = remoteByKey.get(id);
    if (!r) into.missing.push(l[0]);
    else {
      remoteByKey.delete(id);
      if (r[1] !== l[1] || r[2] !== l[2]) into.changed.push(l[0]);
    }
  }
  for (const r of remoteByKey.values()) into.extra.push({ key: r[0], version: r[1] });
}
