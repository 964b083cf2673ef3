/**
 * Finds the rows that differ between the local snapshot and the remote copy over a (version, key)
 * range (DESIGN.md, Manifests). Both sides answer the same manifest requests with the same SQL, in
 * parallel, and only what differs is looked at more closely:
 *   1. summary: the range's count and hash sum; equal on both sides means identical (one pass each,
 *      a few dozen bytes on the wire);
 *   2. buckets: the rows are spread over 2^bits buckets by a hash of their key (about 8 rows a
 *      bucket), and each side returns every bucket's hash sum (8 bytes a bucket): no boundaries
 *      travel, and one pass each finds the differing buckets however many there are;
 *   3. rows: key, version and hash of the rows in the differing buckets only, compared row by row.
 * So a table costs at most three passes on each side, whatever the number of differences (range
 * bisection re-reads the table at every level), and the wire carries 8 bytes a bucket plus the rows
 * of differing buckets. This is how pg_comparator partitions too: by hashed key, not by ranges.
 */
import { type KeyRange, MAX_BUCKET_BITS, type ManifestMode, type ManifestRequest, type ManifestResponse, type ManifestRow } from '../shared/protocol.js';
import type { LocalSnapshot } from './local-database.js';
import type { HttpRemote } from './remote-client.js';

export interface DiffOptions {
  mode: ManifestMode;
  /** Rows a bucket should hold on average; fewer means more bucket bytes, fewer rows compared. */
  rowsPerBucket: number;
  /** Reports the share of the comparison done (0..1). */
  onProgress?: (ratio: number) => void;
}

export const DEFAULT_DIFF: Omit<DiffOptions, 'mode'> = { rowsPerBucket: 8 };

export interface RowDiff {
  /** Local rows absent remotely: key text forms. */
  missing: string[][];
  /** Remote rows absent locally: delete by key and version. */
  extra: { key: string[]; version: string }[];
  /** Same key, other version or content: upload the local row. */
  changed: string[][];
}

export interface DiffReport extends RowDiff {
  /** Buckets whose hash sums were compared (0 when the summaries matched). */
  bucketsCompared: number;
  mismatchedBuckets: number;
  /** Rows compared one by one (both sides). */
  rowsCompared: number;
  /** Manifest requests sent to the server. */
  roundTrips: number;
}

/** Buckets per rows request: bounds the size of one answer. */
const BUCKETS_PER_REQUEST = 65_536;

/** Bits such that `rows` spread over 2^bits buckets fill about `perBucket` each. */
export function bucketBits(rows: number, perBucket: number): number {
  if (rows <= perBucket) return 0;
  return Math.min(MAX_BUCKET_BITS, Math.ceil(Math.log2(rows / perBucket)));
}

/** Bucket indexes whose 8-byte sums differ between two base64 bucket answers. */
export function differingBuckets(local: string, remote: string): number[] {
  const a = Buffer.from(local, 'base64');
  const b = Buffer.from(remote, 'base64');
  if (a.length !== b.length) throw new Error('bucket answers of different sizes');
  const out: number[] = [];
  for (let i = 0; i < a.length; i += 8) if (a.readBigUInt64LE(i) !== b.readBigUInt64LE(i)) out.push(i / 8);
  return out;
}

export async function diffRange(snap: LocalSnapshot, remote: HttpRemote, range: KeyRange, options: DiffOptions): Promise<DiffReport> {
  const report: DiffReport = { missing: [], extra: [], changed: [], bucketsCompared: 0, mismatchedBuckets: 0, rowsCompared: 0, roundTrips: 0 };
  const table = snap.table.name;
  const ask = async (request: ManifestRequest): Promise<[ManifestResponse, ManifestResponse]> => {
    report.roundTrips++;
    return Promise.all([snap.manifest(request), remote.manifest(table, request)]);
  };
  const { mode } = options;

  const [ls, rs] = await ask({ mode, range, level: 'summary' });
  options.onProgress?.(1 / 3);
  if (ls.count === rs.count && ls.hash === rs.hash) {
    options.onProgress?.(1);
    return report;
  }

  const bits = bucketBits(Math.max(ls.count ?? 0, rs.count ?? 0), options.rowsPerBucket);
  const [lb, rb] = await ask({ mode, range, level: 'buckets', bucketBits: bits });
  const differing = differingBuckets(lb.bucketHashes ?? '', rb.bucketHashes ?? '');
  report.bucketsCompared = 2 ** bits;
  report.mismatchedBuckets = differing.length;
  options.onProgress?.(2 / 3);

  for (let i = 0; i < differing.length; i += BUCKETS_PER_REQUEST) {
    const buckets = differing.slice(i, i + BUCKETS_PER_REQUEST);
    const [lr, rr] = await ask({ mode, range, level: 'rows', bucketBits: bits, buckets });
    const localRows = lr.rows ?? [];
    const remoteRows = rr.rows ?? [];
    report.rowsCompared += localRows.length + remoteRows.length;
    compareRows(localRows, remoteRows, report);
  }
  options.onProgress?.(1);
  // Buckets follow the key, so a row whose version differs meets itself in one bucket: changed, not missing and extra.
  return report;
}

/** Row-by-row comparison. */
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
