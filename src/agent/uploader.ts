/**
 * Turns a COPY text stream into upload batches of the tuned size, one request in flight while the
 * next batch fills. A failing batch is retried smaller; a batch that still fails at the minimum
 * size is skipped ahead (its rows quarantined with the server's error); rows the server rejects for
 * their content are isolated by halving, so one bad row never holds back its neighbours.
 */
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';

import type { Logger } from '../shared/logger.js';
import { formatTableName } from '../shared/protocol.js';
import { leadingCopyFields } from '../shared/row-shape.js';
import type { AgentMetrics } from './agent-metrics.js';
import type { BatchTuner } from './batch-tuner.js';
import type { LocalTable, PgLocalDatabase } from './local-database.js';
import { type HttpRemote, RemoteError } from './remote-client.js';

export interface UploaderDeps {
  table: LocalTable;
  local: PgLocalDatabase;
  remote: HttpRemote;
  tuner: BatchTuner;
  metrics: AgentMetrics;
  log: Logger;
  timeoutMs: number;
  quarantine: { retryBaseSeconds: number; retryMaxSeconds: number };
  /** Epoch ms after which no new batch starts. */
  deadline: number;
}

export interface UploadStats {
  rows: number;
  bytes: number;
  batches: number;
  quarantined: number;
  /** False when the deadline stopped the stream early. */
  complete: boolean;
  /** Keys of the rows the server applied (only when asked for). */
  appliedKeys?: string[][];
}

const NEWLINE = 0x0a;
const NETWORK_RETRIES = 2;

function countRows(buf: Buffer): number {
  let n = 0;
  for (let i = buf.indexOf(NEWLINE); i !== -1; i = buf.indexOf(NEWLINE, i + 1)) n++;
  return n;
}

/** Splits COPY text into pieces of at most `rows` rows and `bytes` bytes (at least one row each). */
function splitRows(buf: Buffer, rows: number, bytes: number): Buffer[] {
  const pieces: Buffer[] = [];
  let start = 0;
  let n = 0;
  let i = buf.indexOf(NEWLINE);
  while (i !== -1) {
    n++;
    const end = i + 1;
    const next = buf.indexOf(NEWLINE, end);
    if (n >= rows || end - start >= bytes || next === -1 || next + 1 - start > bytes) {
      pieces.push(buf.subarray(start, end));
      start = end;
      n = 0;
    }
    i = next;
  }
  if (start < buf.length) pieces.push(buf.subarray(start));
  return pieces;
}

export class Uploader {
  private readonly label: string;
  private readonly keyWidth: number;

  constructor(private readonly d: UploaderDeps) {
    this.label = formatTableName(d.table.name);
    this.keyWidth = d.table.shape.keyColumns.length;
  }

  /** Keys and versions of the rows in a batch (the leading wire columns). */
  private rowIds(buf: Buffer): { key: string[]; version: string }[] {
    const text = buf.toString('utf8');
    const lines = text.split('\n');
    if (lines[lines.length - 1] === '') lines.pop();
    return lines.map((line) => {
      const [version, ...key] = leadingCopyFields(line, 1 + this.keyWidth);
      return { version: version ?? '0', key: key.map((k) => k ?? '') };
    });
  }

  private async sendOnce(buf: Buffer, rows: number, stats: UploadStats): Promise<void> {
    const { remote, table, tuner, metrics, local } = this.d;
    const started = performance.now();
    try {
      await remote.upload(table.name, buf, { timeoutMs: this.d.timeoutMs });
      const seconds = (performance.now() - started) / 1000;
      tuner.success(rows, buf.length, seconds);
      metrics.batchDuration.observe({ table: this.label, outcome: 'ok' }, seconds);
      metrics.rowsUploaded.inc({ table: this.label }, rows);
      metrics.bytesUploaded.inc({ table: this.label }, buf.length);
      await local.recordBatch(table.name, { rows, bytes: buf.length, durationSeconds: seconds, outcome: 'ok', errorClass: null });
      stats.rows += rows;
      stats.bytes += buf.length;
      stats.batches++;
      if (stats.appliedKeys) for (const id of this.rowIds(buf)) stats.appliedKeys.push(id.key);
    } catch (e) {
      const seconds = (performance.now() - started) / 1000;
      if (e instanceof RemoteError) {
        const outcome = e.errorClass === 'rejected' ? 'rejected' : 'failed';
        tuner.failure(rows, buf.length, e.errorClass);
        metrics.batchDuration.observe({ table: this.label, outcome }, seconds);
        metrics.batchFailures.inc({ table: this.label, error_class: e.errorClass });
        await local.recordBatch(table.name, { rows, bytes: buf.length, durationSeconds: seconds, outcome, errorClass: e.errorClass });
      }
      throw e;
    } finally {
      const size = tuner.size;
      metrics.batchSizeRows.set({ table: this.label }, size.rows);
      metrics.batchSizeBytes.set({ table: this.label }, size.bytes);
    }
  }

  private async skipAhead(buf: Buffer, error: RemoteError, stats: UploadStats): Promise<void> {
    const ids = this.rowIds(buf);
    const { quarantine } = this.d;
    await this.d.local.quarantine(this.d.table.name, ids, `${error.code}: ${error.message}`, quarantine.retryBaseSeconds, quarantine.retryMaxSeconds);
    this.d.metrics.skipAheads.inc({ table: this.label });
    stats.quarantined += ids.length;
    this.d.log.warn({ table: this.label, rows: ids.length, errorClass: error.errorClass, code: error.code }, 'batch quarantined');
  }

  /** Sends one batch; on failure retries it in smaller pieces, down to skip-ahead. */
  private async send(buf: Buffer, stats: UploadStats, networkAttempt = 0): Promise<void> {
    const rows = countRows(buf);
    if (rows === 0) return;
    try {
      await this.sendOnce(buf, rows, stats);
    } catch (e) {
      if (!(e instanceof RemoteError)) throw e;
      if (e.errorClass === 'network') {
        // The server is away: retrying smaller would not help. A couple of quick tries, then the run fails.
        if (networkAttempt >= NETWORK_RETRIES) throw e;
        await sleep(250 * 2 ** networkAttempt);
        return this.send(buf, stats, networkAttempt + 1);
      }
      if (e.errorClass === 'rejected') {
        // The content is at fault: halve until the bad rows stand alone, then quarantine them.
        if (rows === 1) return this.skipAhead(buf, e, stats);
        const half = Math.ceil(rows / 2);
        for (const piece of splitRows(buf, half, Number.MAX_SAFE_INTEGER)) await this.send(piece, stats);
        return;
      }
      if (e.errorClass === 'timeout' || e.errorClass === 'too_large' || e.errorClass === 'server_error') {
        if (rows === 1 || this.d.tuner.atMinimum(rows, buf.length)) return this.skipAhead(buf, e, stats);
        const size = this.d.tuner.size;
        const pieces = splitRows(buf, Math.min(size.rows, Math.ceil(rows / 2)), Math.min(size.bytes, Math.ceil(buf.length / 2)));
        await sleep(100);
        for (const piece of pieces) await this.send(piece, stats);
        return;
      }
      throw e; // auth, conflict (lease, schema), client errors: the run stops
    }
  }

  /** Uploads a COPY text stream; resolves when every row is applied or quarantined. */
  async upload(stream: Readable, options: { collectKeys?: boolean } = {}): Promise<UploadStats> {
    const stats: UploadStats = { rows: 0, bytes: 0, batches: 0, quarantined: 0, complete: true, ...(options.collectKeys ? { appliedKeys: [] } : {}) };
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    let pendingRows = 0;
    let inflight: Promise<void> | null = null;
    const flush = async (): Promise<void> => {
      const buf = Buffer.concat(pending, pendingBytes);
      pending = [];
      pendingBytes = 0;
      pendingRows = 0;
      if (inflight) await inflight;
      inflight = this.send(buf, stats);
      // Surface a failure at the next await without an unhandled rejection meanwhile.
      inflight.catch(() => {});
    };
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        pending.push(chunk);
        pendingBytes += chunk.length;
        pendingRows += countRows(chunk);
        const size = this.d.tuner.size;
        if ((pendingRows >= size.rows || pendingBytes >= size.bytes) && chunk[chunk.length - 1] === NEWLINE) {
          await flush();
          if (Date.now() > this.d.deadline) {
            stats.complete = false;
            break;
          }
        }
      }
      if (stats.complete && pendingBytes > 0) await flush();
      if (inflight) await inflight;
    } finally {
      if (!stream.destroyed) stream.destroy();
    }
    return stats;
  }
}
