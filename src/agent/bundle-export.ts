/**
 * `tidemark export`: an offline site's run, written to a file instead of sent (README, Offline
 * sites). Per table, in one local snapshot, the bundle carries what the cloud lacks as far as the
 * last receipt tells (everything without one):
 *   - rows: the versions the receipt's summary has not settled (uploadRanges, as an online run),
 *     as COPY text batches cut at row ends, each applied whole or not at all by the import;
 *   - deletes, by anti-entropy: for each coarse key-hash bucket whose hash differs from the
 *     receipt's (every bucket without one), the complete local (key, version) set of that bucket;
 *     the import deletes the cloud rows of the bucket that are not in it and that the snapshot knew.
 * The file is streamed (one batch in memory at a time) and ends with an HMAC of every byte.
 */

import { once } from 'node:events';
import { createWriteStream, type WriteStream } from 'node:fs';
import type { Readable } from 'node:stream';

import type pg from 'pg';

import { ErrorCode, TidemarkError } from '../shared/errors.js';
import {
  apiKeySha256,
  BUNDLE_BUCKET_BITS,
  BUNDLE_MAGIC,
  type BundleHeader,
  type BundleReceipt,
  type BundleTable,
  type BundleTableEnd,
  bundleHmac,
  FrameType,
  frameHeader,
  MAX_BUNDLE_JSON_FRAME_BYTES,
} from '../shared/protocol/bundle.js';
import { formatTableName, type KeyRange, type ManifestRequest, type TableName } from '../shared/protocol.js';
import { PgLocalCatalog } from './local/local-catalog.js';
import { openSnapshot } from './local/local-snapshot.js';
import { differingBuckets } from './manifest-diff.js';
import { uploadRanges } from './upload-ranges.js';

export interface ExportOptions {
  pool: pg.Pool;
  clientId: string;
  databaseId: string;
  apiKey: string;
  out: string;
  receipt: BundleReceipt | null;
  /** Tables to export (default: every tracked table). */
  tables: TableName[] | null;
  /** Bytes of COPY text per rows frame (the import applies one frame as one batch). */
  batchBytes?: number;
  /** Buckets per key-set frame. */
  bucketsPerFrame?: number;
}

export interface ExportResult {
  out: string;
  sequence: string;
  tables: number;
  rows: number;
  /** Keys carried for deletion checks (the complete key sets of the changed buckets). */
  deletes: number;
  bytes: number;
}

const DEFAULT_BATCH_BYTES = 4 * 1024 * 1024;
/**
 * Keys a key-set frame aims at. Each frame costs one scan of the local table here (the manifest
 * of its buckets) and the import checks about as many keys per scan of the cloud table, so frames
 * are large: a 10M-row table takes 100 scans on each side. Held in memory once (tens of MB); a frame
 * over the import's JSON limit (wide keys) is split.
 */
const KEYS_PER_FRAME = 100_000;
const NEWLINE = 0x0a;

/** Writes frames to a file, HMAC-ing every byte, waiting on the disk when it lags. */
class BundleWriter {
  private readonly file: WriteStream;
  private readonly mac;
  bytes = 0;
  constructor(path: string, apiKey: string) {
    this.file = createWriteStream(path);
    this.mac = bundleHmac(apiKeySha256(apiKey));
  }
  private async raw(b: Buffer, authenticated = true): Promise<void> {
    if (authenticated) this.mac.update(b);
    this.bytes += b.length;
    if (!this.file.write(b)) await once(this.file, 'drain');
  }
  async start(): Promise<void> {
    await this.raw(BUNDLE_MAGIC);
  }
  async frame(type: FrameType, payload: Buffer): Promise<void> {
    await this.raw(frameHeader(type, payload.length));
    await this.raw(payload);
  }
  json(type: FrameType, value: unknown): Promise<void> {
    return this.frame(type, Buffer.from(JSON.stringify(value)));
  }
  async finish(): Promise<void> {
    const mac = this.mac.digest();
    await this.raw(frameHeader(FrameType.mac, mac.length), false);
    await this.raw(mac, false);
    this.file.end();
    await once(this.file, 'finish');
  }
  destroy(): void {
    this.file.destroy();
  }
}

/** Cuts a COPY text stream into batches of about `batchBytes`, at row ends (a raw newline ends a row in COPY text). */
async function* copyBatches(stream: Readable, batchBytes: number): AsyncGenerator<{ data: Buffer; rows: number }> {
  let parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    parts.push(chunk);
    size += chunk.length;
    if (size < batchBytes) continue;
    const all = Buffer.concat(parts);
    const cut = all.lastIndexOf(NEWLINE) + 1;
    if (cut > 0) {
      const data = all.subarray(0, cut);
      yield { data, rows: countRows(data) };
    }
    parts = [all.subarray(cut)];
    size = all.length - cut;
  }
  if (size > 0) {
    const data = Buffer.concat(parts);
    yield { data, rows: countRows(data) };
  }
}

function countRows(b: Buffer): number {
  let n = 0;
  for (let i = b.indexOf(NEWLINE); i !== -1; i = b.indexOf(NEWLINE, i + 1)) n++;
  return n;
}

export async function exportBundle(options: ExportOptions): Promise<ExportResult> {
  const { pool, receipt } = options;
  const databaseId = options.databaseId.toLowerCase();
  if (receipt && (receipt.clientId !== options.clientId || receipt.databaseId !== databaseId))
    throw new TidemarkError(
      ErrorCode.CONFIG_INVALID,
      `the receipt is for ${receipt.clientId}/${receipt.databaseId}, not ${options.clientId}/${databaseId}: pass this database's last receipt, or none`,
    );
  const catalog = new PgLocalCatalog(pool);
  const names = options.tables ?? (await catalog.listTracked());
  const tables = await Promise.all(names.map((n) => catalog.describe(n)));
  // The sequence: the local transaction horizon, which only grows (a newer bundle has a larger one).
  const { rows: seq } = await pool.query<{ x: string }>(/* sql */ `select pg_snapshot_xmax(pg_current_snapshot())::text as x`);
  const header: BundleHeader = {
    format: 1,
    clientId: options.clientId,
    databaseId,
    sequence: seq[0]?.x ?? '0',
    createdAt: new Date().toISOString(),
    tables: tables.map((t) => formatTableName(t.name)),
    bucketBits: BUNDLE_BUCKET_BITS,
  };
  const result: ExportResult = { out: options.out, sequence: header.sequence, tables: tables.length, rows: 0, deletes: 0, bytes: 0 };
  const writer = new BundleWriter(options.out, options.apiKey);
  try {
    await writer.start();
    await writer.json(FrameType.header, header);
    for (const table of tables) {
      const label = formatTableName(table.name);
      const known = receipt?.tables.find((t) => t.table === label) ?? null;
      const snap = await openSnapshot(pool, table);
      try {
        const begin: BundleTable = { table: label, declaration: table.declaration, snapshot: snap.snapshot };
        await writer.json(FrameType.table, begin);
        // Rows the cloud may lack.
        const ranges: KeyRange[] = known ? uploadRanges(known.summary) : [{ lower: null, upper: null }];
        let rows = 0;
        for (const range of ranges) {
          for await (const batch of copyBatches(await snap.copyOut(range), options.batchBytes ?? DEFAULT_BATCH_BYTES)) {
            await writer.frame(FrameType.rows, batch.data);
            rows += batch.rows;
          }
        }
        // Deletes: the complete key sets of the buckets that changed since the receipt.
        const all: KeyRange = { lower: null, upper: null };
        const bits = header.bucketBits;
        const base: Omit<ManifestRequest, 'level'> = { mode: 'hash', range: all, hashKind: 'text', bucketBits: bits };
        const level1 = await snap.manifest({ ...base, level: 'buckets' });
        const local = level1.bucketHashes ?? '';
        const changed =
          known && receipt?.bucketBits === bits && known.bucketHashes.length === local.length
            ? differingBuckets(local, known.bucketHashes)
            : Array.from({ length: 2 ** bits }, (_, i) => i);
        // About KEYS_PER_FRAME keys a frame, whole buckets each (a frame bounds memory on both sides).
        const rowsPerBucket = Math.max(1, (level1.count ?? 0) / 2 ** bits);
        const per = options.bucketsPerFrame ?? Math.max(1, Math.floor(KEYS_PER_FRAME / rowsPerBucket));
        // A frame over the import's JSON limit (wide keys, huge buckets) is split in halves, down to one bucket.
        const writeKeys = async (buckets: number[]): Promise<void> => {
          // The frame is a BundleKeys object; its rows as PostgreSQL wrote them (one string, not an object a row).
          const keys = await snap.keySetJson({ ...base, mode: 'count', level: 'rows', buckets });
          const payload = Buffer.from(`{"buckets":${JSON.stringify(buckets)},"rows":${keys.json}}`);
          if (payload.length > MAX_BUNDLE_JSON_FRAME_BYTES) {
            if (buckets.length === 1)
              throw new TidemarkError(
                ErrorCode.RUN_INCOMPLETE,
                `${label}: the key set of bucket ${buckets[0]} is ${payload.length} bytes, above the ${MAX_BUNDLE_JSON_FRAME_BYTES} a bundle frame may hold; sync this table online`,
              );
            const half = Math.ceil(buckets.length / 2);
            await writeKeys(buckets.slice(0, half));
            await writeKeys(buckets.slice(half));
            return;
          }
          result.deletes += keys.count;
          await writer.frame(FrameType.keys, payload);
        };
        for (let i = 0; i < changed.length; i += per) await writeKeys(changed.slice(i, i + per));
        const stats = await snap.stats();
        const end: BundleTableEnd = { table: label, maxModified: await stats.maxModifiedSince('0'), bucketHashes: local, rows };
        await writer.json(FrameType.tableEnd, end);
        result.rows += rows;
      } finally {
        await snap.close();
      }
    }
    await writer.finish();
  } catch (e) {
    writer.destroy();
    throw e;
  }
  result.bytes = writer.bytes;
  return result;
}
