/**
 * Finds the rows that differ between the local snapshot and the remote copy over a (version, key)
 * range (docs/design.md, Manifests and verification). Both sides answer the same manifest requests with the same SQL, in
 * parallel, and only what differs is looked at more closely:
 *   1. coarse buckets: the rows are spread over at most 2^10 buckets by a hash of their key, and
 *      each side returns every bucket's hash sum (8 bytes a bucket, so at most 8 KiB). All equal
 *      means identical: one pass on each side;
 *   2. fine buckets (about 8 rows each) within the differing coarse buckets only;
 *   3. rows: key, version and hash of the rows of the differing fine buckets, compared row by row.
 * So a comparison costs at most three passes on each side, whatever the number of differences, and
 * no boundaries travel. This is how pg_comparator partitions too: by hashed key, not by ranges.
 * Rows are hashed with their columns' own hash functions when both sides can (`record`), else from
 * their canonical text.
 */
import { ErrorCode, InvariantError } from '../shared/errors.js';
import {
  type HashKind,
  type KeyRange,
  MAX_BUCKET_BITS,
  type ManifestMode,
  type ManifestRequest,
  type ManifestResponse,
  type ManifestRow,
} from '../shared/protocol.js';
import { bucketLayout } from '../shared/row-shape.js';
import type { LocalSnapshot } from './local/local-snapshot.js';
import { type Remote, RemoteError } from './remote.js';

export interface DiffOptions {
  mode: ManifestMode;
  /** Rows a fine bucket should hold on average; fewer means more bucket bytes, fewer rows compared. */
  rowsPerBucket: number;
  /** Rows the range is expected to hold (sizes the first level). */
  expectedRows: number;
  /** Reports the share of the comparison done (0..1). */
  onProgress?: (ratio: number) => void;
}

export const DEFAULT_DIFF: Pick<DiffOptions, 'rowsPerBucket'> = { rowsPerBucket: 8 };

export interface RowDiff {
  /** Local rows absent remotely: key text forms. */
  missing: string[][];
  /** Remote rows absent locally: delete by key and version. */
  extra: { key: string[]; version: string }[];
  /** Same key, other version or content: upload the local row. */
  changed: string[][];
  /**
   * Changed rows whose remote version is above the local one (after a restore or a move to a new
   * cluster): the server never lets an older version replace a newer one, so the repair deletes
   * these by key and version before uploading the local rows.
   */
  superseded?: { key: string[]; version: string }[];
}

export interface DiffReport extends RowDiff {
  /** Buckets whose hash sums were compared, over both levels. */
  bucketsCompared: number;
  mismatchedBuckets: number;
  /** Rows compared one by one (both sides). */
  rowsCompared: number;
  /** Manifest requests sent to the server. */
  roundTrips: number;
  hashKind: HashKind;
}

/** Buckets per rows request: bounds the size of one answer. */
const BUCKETS_PER_REQUEST = 65_536;
/** The first level has at most 2^10 buckets: 8 KiB on the wire. */
const COARSE_BITS = 10;
/** Rows a coarse bucket holds at least, so small ranges are summarised in a bucket or a few. */
const COARSE_ROWS = 1024;

/** Bits such that `rows` spread over 2^bits buckets fill about `perBucket` each. */
export function bucketBits(rows: number, perBucket: number): number {
  if (rows <= perBucket) return 0;
  return Math.min(MAX_BUCKET_BITS, Math.ceil(Math.log2(rows / perBucket)));
}

/** Bucket indexes whose 8-byte sums differ between two base64 bucket answers. */
export function differingBuckets(local: string, remote: string): number[] {
  const a = Buffer.from(local, 'base64');
  const b = Buffer.from(remote, 'base64');
  if (a.length !== b.length) throw new InvariantError(`bucket answers of different sizes (${a.length} and ${b.length} bytes)`);
  const out: number[] = [];
  for (let i = 0; i < a.length; i += 8) if (a.readBigUInt64LE(i) !== b.readBigUInt64LE(i)) out.push(i / 8);
  return out;
}

/** Compares a range, hashing with `record` when both sides can, else `text`. */
export async function diffRange(snap: LocalSnapshot, remote: Remote, range: KeyRange, options: DiffOptions): Promise<DiffReport> {
  if (await snap.recordHashing()) {
    try {
      return await diffWith(snap, remote, range, options, 'record');
    } catch (e) {
      // The server's PostgreSQL cannot (before 14, or a type without an extended hash function).
      if (!(e instanceof RemoteError && e.code === ErrorCode.COLUMN_TYPE_UNSUPPORTED)) throw e;
    }
  }
  return diffWith(snap, remote, range, options, 'text');
}

async function diffWith(snap: LocalSnapshot, remote: Remote, range: KeyRange, options: DiffOptions, hashKind: HashKind): Promise<DiffReport> {
  const report: DiffReport = { missing: [], extra: [], changed: [], bucketsCompared: 0, mismatchedBuckets: 0, rowsCompared: 0, roundTrips: 0, hashKind };
  const table = snap.table.name;
  const { mode } = options;
  const ask = async (request: Omit<ManifestRequest, 'mode' | 'range' | 'hashKind'>): Promise<[ManifestResponse, ManifestResponse]> => {
    report.roundTrips++;
    const full: ManifestRequest = { mode, range, hashKind, ...request };
    return Promise.all([snap.manifest(full), remote.manifest(table, full)]);
  };

  // Level 1: coarse buckets (at most 1024: 8 KiB). Equal everywhere means identical.
  const coarse = Math.min(COARSE_BITS, bucketBits(options.expectedRows, COARSE_ROWS));
  const [l1, r1] = await ask({ level: 'buckets', bucketBits: coarse });
  const differingCoarse = differingBuckets(l1.bucketHashes ?? '', r1.bucketHashes ?? '');
  report.bucketsCompared += 2 ** coarse;
  options.onProgress?.(1 / 3);
  if (differingCoarse.length === 0) {
    options.onProgress?.(1);
    return report;
  }

  // Level 2: fine buckets (about rowsPerBucket rows each), within the differing coarse ones only.
  const fine = Math.max(coarse, bucketBits(Math.max(l1.count ?? 0, r1.count ?? 0), options.rowsPerBucket));
  let differing = differingCoarse;
  if (fine > coarse) {
    const within = { bits: coarse, buckets: differingCoarse };
    const [l2, r2] = await ask({ level: 'buckets', bucketBits: fine, within });
    const layout = bucketLayout(fine, within);
    differing = differingBuckets(l2.bucketHashes ?? '', r2.bucketHashes ?? '').map(layout.bucketAt);
    report.bucketsCompared += layout.slots;
  }
  report.mismatchedBuckets = differing.length;
  options.onProgress?.(2 / 3);

  // Level 3: the rows of the differing fine buckets, compared row by row.
  for (let i = 0; i < differing.length; i += BUCKETS_PER_REQUEST) {
    const [lr, rr] = await ask({ level: 'rows', bucketBits: fine, buckets: differing.slice(i, i + BUCKETS_PER_REQUEST) });
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
      if (r[1] !== l[1] || r[2] !== l[2]) {
        into.changed.push(l[0]);
        if (BigInt(r[1]) > BigInt(l[1])) {
          into.superseded ??= [];
          into.superseded.push({ key: r[0], version: r[1] });
        }
      }
    }
  }
  for (const r of remoteByKey.values()) into.extra.push({ key: r[0], version: r[1] });
}
