/**
 * Turns a COPY text stream into upload batches of the tuned size, one request in flight while the
 * next batch fills. Batches are cut at row boundaries within the tuner's limits (a batch exceeds the
 * bytes limit only when its single row does), so a learned body-size limit is never overshot. The
 * next batch is cut only once the one in flight is done, at the limits that one left. A first sync
 * may keep several requests in flight (`maxInFlight`; docs/scaling.md, First sync): they are
 * settled in stream order, and any failure brings the upload back to one until its rows are through.
 *
 * (Above the ~350 lines of the style guide: the cutting of the stream and the failure rules share
 * one upload's state, and read best in one place.)
 *
 * Failures, by class (remote.ts):
 *  - too large, timeout, server error (about the size): the batch goes back to the head of the
 *    stream and is cut again at the tuner's new, smaller limits and at most half its rows (until
 *    that many rows are through), so what is left of it joins the rows that follow, and batches that
 *    keep failing shrink to single rows in log2(rows) steps. A single row that still fails is
 *    skipped ahead: too large, it is quarantined at once; after a timeout or server error it is a
 *    suspect (meanwhile batches are single rows) until a later request succeeds, which shows the
 *    server is up: then it is sent once more, and quarantined only if it fails again, so a passing
 *    502 never quarantines a healthy row. At the end of the stream, a summary request stands in for
 *    the later batch; if the server does not answer it, the suspects stay unconfirmed (neither
 *    applied nor quarantined) and the upload is incomplete: the next run sends them again. Eight
 *    single rows failing in a row with nothing succeeding in between mean the server is failing, not
 *    the rows: the upload stops with that error, quarantining none of them. Past the run's budget
 *    no batch starts (the upload reports itself incomplete);
 *  - rejected (400, bad rows): halved by rows until the bad rows stand alone, then quarantined, so
 *    one bad row never holds back its neighbours; the size is left alone;
 *  - network (server unreachable): two quick retries of the same batch, then the run fails;
 *  - conflict: an insert-only batch that met existing rows is re-sent as an upsert (and the rest of
 *    the upload too); a lease or schema conflict fails the run, as do auth and other client errors.
 * A quarantined row that the server applies in any batch leaves quarantine at once.
 * Every request is recorded in tidemark.batch_history, which is pruned after each upload.
 */
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';

import { ErrorCode, InvariantError } from '../shared/errors.js';
import { formatTableName } from '../shared/protocol.js';
import { countRows, cutChunks, cutPoint, lastRowOf, type RowId, rowIdsOf } from './copy-rows.js';
import { RemoteError } from './remote.js';
import type { UploadCallOptions, UploadContext, UploaderDeps, UploadStats } from './upload-types.js';

export type { UploadCallOptions, UploaderDeps, UploadStats } from './upload-types.js';

const NETWORK_RETRIES = 2;
/** Tries of one batch the server shed (503 TM_SERVER_OVERLOADED) before the run stops until its next tick. */
const OVERLOAD_RETRIES = 3;
/** Waits of a shed batch: the server's Retry-After, this without one, and never longer than the cap. */
const DEFAULT_RETRY_AFTER_SECONDS = 2;
const MAX_RETRY_AFTER_SECONDS = 60;
/** Pause before cutting again a batch that timed out or met a server error (a struggling server gets a moment). */
const RETRY_PAUSE_MS = 100;
/** Single rows failing in a row, with no success between, that mean the server (not the rows) is failing. */
const MAX_SUSPECTS = 8;

export class Uploader {
  private readonly label: string;
  private readonly keyWidth: number;

  constructor(private readonly d: UploaderDeps) {
    this.label = formatTableName(d.table.name);
    this.keyWidth = d.table.shape.keyColumns.length;
  }

  private lastRowOf(buf: Buffer): RowId | undefined {
    return lastRowOf(buf, this.keyWidth);
  }

  private rowIds(buf: Buffer): RowId[] {
    return rowIdsOf(buf, this.keyWidth);
  }

  /** `cutAt`: the tuner's size when the batch was cut (the tuner grows from it, not from a size grown since). */
  private async sendOnce(buf: Buffer, rows: number, ctx: UploadContext, cutAt?: { rows: number; bytes: number }): Promise<void> {
    const { remote, table, tuner, metrics, history } = this.d;
    const { stats } = ctx;
    const started = performance.now();
    this.d.budget.spend();
    const settle = ctx.settleWith;
    ctx.settleWith = undefined;
    try {
      const result = await remote.upload(table.name, buf, { timeoutMs: this.d.timeoutMs, insertOnly: ctx.insertOnly, ...settle });
      if (settle) stats.settled = result.summary;
      const seconds = (performance.now() - started) / 1000;
      tuner.success(rows, buf.length, seconds, cutAt);
      metrics.batchDuration.observe({ table: this.label, outcome: 'ok' }, seconds);
      metrics.rowsUploaded.inc({ table: this.label }, rows);
      metrics.bytesUploaded.inc({ table: this.label }, buf.length);
      ctx.recorded++;
      await history.record(table.name, { rows, bytes: buf.length, durationSeconds: seconds, outcome: 'ok', errorClass: null });
      stats.rows += rows;
      stats.bytes += buf.length;
      stats.batches++;
      this.d.log.debug({ table: this.label, rows, bytes: buf.length, seconds }, 'batch sent');
      this.d.onBatch?.(rows, buf.length);
      if (stats.appliedKeys) for (const id of this.rowIds(buf)) stats.appliedKeys.push(id.key);
      await this.releaseApplied(buf);
    } catch (e) {
      const seconds = (performance.now() - started) / 1000;
      if (e instanceof RemoteError) {
        const outcome = e.errorClass === 'rejected' ? 'rejected' : 'failed';
        tuner.failure(rows, buf.length, e.errorClass, seconds);
        metrics.batchDuration.observe({ table: this.label, outcome }, seconds);
        metrics.batchFailures.inc({ table: this.label, error_class: e.errorClass });
        ctx.recorded++;
        await history.record(table.name, { rows, bytes: buf.length, durationSeconds: seconds, outcome, errorClass: e.errorClass });
      }
      throw e;
    } finally {
      const size = tuner.size;
      metrics.batchSizeRows.set({ table: this.label }, size.rows);
      metrics.batchSizeBytes.set({ table: this.label }, size.bytes);
    }
  }

  private async skipAhead(buf: Buffer, error: RemoteError, ctx: UploadContext): Promise<void> {
    const ids = this.rowIds(buf);
    await this.d.quarantine.add(this.d.table.name, ids, `${error.code}: ${error.message}`, this.d.quarantineRetry, new Date(this.d.now()));
    this.d.metrics.skipAheads.inc({ table: this.label });
    ctx.stats.quarantined += ids.length;
    this.d.log.warn({ table: this.label, rows: ids.length, errorClass: error.errorClass, code: error.code }, 'batch quarantined');
  }

  /** Quarantined rows that the server has just applied leave quarantine. */
  private async releaseApplied(buf: Buffer): Promise<void> {
    const set = this.d.quarantinedKeys;
    if (set.size === 0) return;
    const keys = this.rowIds(buf)
      .map((id) => id.key)
      .filter((k) => set.has(JSON.stringify(k)));
    if (keys.length === 0) return;
    await this.d.quarantine.release(this.d.table.name, keys);
    for (const k of keys) set.delete(JSON.stringify(k));
    this.d.log.info({ table: this.label, rows: keys.length }, 'quarantined rows reached the server');
  }

  /**
   * A request succeeded since the suspects failed: the server is up. Each suspect is sent once
   * more: a passing failure (a proxy's 502, a timeout) lets it through; failing again with the
   * server up shows the row is at fault, and it is quarantined.
   */
  private async resolveSuspects(ctx: UploadContext): Promise<void> {
    // Batches in flight together may both succeed with suspects waiting: one resolves them, the other waits for it.
    while (ctx.resolving) await ctx.resolving;
    if (ctx.suspects.length === 0) return;
    const resolving = this.resolveSuspectsNow(ctx);
    ctx.resolving = resolving.then(
      () => {},
      () => {},
    );
    try {
      await resolving;
    } finally {
      ctx.resolving = null;
    }
  }

  private async resolveSuspectsNow(ctx: UploadContext): Promise<void> {
    while (ctx.suspects.length > 0) {
      const s = ctx.suspects[0] as { buf: Buffer; error: RemoteError };
      try {
        await this.sendOnce(s.buf, 1, ctx);
      } catch (e) {
        if (!(e instanceof RemoteError)) throw e;
        if (e.errorClass === 'conflict' && e.code === ErrorCode.UPLOAD_CONFLICT && ctx.insertOnly) {
          ctx.insertOnly = false; // the first try was applied after all: send it as an upsert
          continue;
        }
        if (e.errorClass === 'network' || e.errorClass === 'auth' || e.errorClass === 'client_error' || e.errorClass === 'conflict') throw e;
        await this.skipAhead(s.buf, e, ctx);
      }
      ctx.suspects.shift();
    }
  }

  /**
   * Sends one batch. 'resend' means it failed for its size and must be cut smaller (it holds more
   * than one row); every other outcome is settled here: applied, quarantined, or thrown.
   */
  private async attempt(buf: Buffer, ctx: UploadContext, cutAt?: { rows: number; bytes: number }): Promise<'done' | 'resend'> {
    const rows = countRows(buf);
    if (rows === 0) return 'done';
    let overloadAttempt = 0;
    for (let networkAttempt = 0; ; networkAttempt++) {
      try {
        await this.sendOnce(buf, rows, ctx, cutAt);
        if (ctx.suspects.length > 0) await this.resolveSuspects(ctx);
        return 'done';
      } catch (e) {
        if (!(e instanceof RemoteError)) throw e;
        switch (e.errorClass) {
          case 'network':
            // The server is away: retrying smaller would not help. A couple of quick tries, then the run fails.
            if (networkAttempt >= NETWORK_RETRIES) throw e;
            await sleep(250 * 2 ** networkAttempt);
            continue;
          case 'overloaded':
            // The server sheds load: the same batch again after its Retry-After, no smaller (the
            // tuner does not count it as a size failure); after a few, the run stops until next tick.
            if (overloadAttempt++ >= OVERLOAD_RETRIES) throw e;
            await sleep(Math.min(e.retryAfterSeconds ?? DEFAULT_RETRY_AFTER_SECONDS, MAX_RETRY_AFTER_SECONDS) * 1000);
            networkAttempt--;
            continue;
          case 'rejected':
            // The content is at fault: halve until the bad rows stand alone, then quarantine them.
            if (rows === 1) await this.skipAhead(buf, e, ctx);
            else await this.sendHalves(buf, rows, ctx);
            return 'done';
          case 'too_large':
            if (rows > 1) return 'resend';
            await this.skipAhead(buf, e, ctx);
            return 'done';
          case 'timeout':
          case 'server_error':
            if (rows > 1) {
              await sleep(RETRY_PAUSE_MS);
              return 'resend';
            }
            ctx.suspects.push({ buf, error: e });
            if (ctx.suspects.length >= MAX_SUSPECTS) {
              ctx.suspects.length = 0;
              throw e;
            }
            return 'done';
          case 'conflict':
            // An insert-only batch met existing rows (re-sent after a lost answer): the same batch as an upsert.
            if (e.code === ErrorCode.UPLOAD_CONFLICT && ctx.insertOnly) {
              ctx.insertOnly = false;
              networkAttempt--;
              continue;
            }
            throw e; // lease or schema: the run stops
          default:
            throw e; // auth, client errors: the run stops
        }
      }
    }
  }

  private async confirmSuspects(ctx: UploadContext): Promise<void> {
    try {
      await this.d.remote.summary(this.d.table.name);
      await this.resolveSuspects(ctx);
    } catch (e) {
      if (!(e instanceof RemoteError)) throw e;
      this.d.log.warn({ table: this.label, rows: ctx.suspects.length, errorClass: e.errorClass }, 'server still failing; rows left for the next run');
    }
    if (ctx.suspects.length > 0) {
      ctx.stats.unconfirmed = ctx.suspects.length;
      ctx.stats.complete = false;
      ctx.suspects.length = 0;
    }
  }

  /** Sends `buf` in two halves by rows, each halved again while it fails for its size. */
  private async sendHalves(buf: Buffer, rows: number, ctx: UploadContext): Promise<void> {
    const half = Math.ceil(rows / 2);
    for (let rest = buf; rest.length > 0; ) {
      const end = cutPoint(rest, half, Number.POSITIVE_INFINITY) || rest.length;
      const piece = rest.subarray(0, end);
      if ((await this.attempt(piece, ctx)) === 'resend') await this.sendHalves(piece, countRows(piece), ctx);
      rest = rest.subarray(end);
    }
  }

  /** Uploads a COPY text stream; resolves when every row is applied or quarantined (or the deadline passed). */
  async upload(stream: Readable, options: UploadCallOptions = {}): Promise<UploadStats> {
    const stats: UploadStats = {
      rows: 0,
      bytes: 0,
      batches: 0,
      quarantined: 0,
      unconfirmed: 0,
      complete: true,
      ...(options.collectKeys ? { appliedKeys: [] } : {}),
    };
    const ctx: UploadContext = { stats, suspects: [], recorded: 0, insertOnly: options.insertOnly === true, resolving: null };
    const maxInFlight = Math.max(1, Math.floor(options.maxInFlight ?? 1));
    const maxBatchBytes = options.maxBatchBytes ?? Number.POSITIVE_INFINITY;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    let pendingRows = 0;
    /** Batches sent and not yet settled, oldest (first in the stream) first. */
    const inflight: { batch: Buffer; rows: number; outcome: Promise<'done' | 'resend'> }[] = [];
    /**
     * Halves of batches that failed for their size: until `rows` more rows are through (applied or
     * quarantined), a batch holds at most `maxRows`, whatever the tuner allows. Like a recursion
     * over halves, it finds a failing row in log2(rows) steps even when the tuner is at its minimum.
     */
    let halves: { maxRows: number; rows: number }[] = [];
    const maxRows = (): number => Math.min(ctx.suspects.length > 0 ? 1 : Number.POSITIVE_INFINITY, ...halves.map((h) => h.maxRows));
    /**
     * The largest limits of this upload, in rows and in bytes, that ended a batch the server applied.
     * A batch cut at limits above both (the first, a step of growth or bisection, the tuner's probe
     * above its ceiling) goes alone: a size the server refuses is then refused once, not once per
     * request in flight.
     */
    const proven = { rows: 0, bytes: 0 };
    const limits = (): { rows: number; bytes: number } => {
      const size = this.d.tuner.size;
      return { rows: Math.min(size.rows, maxRows()), bytes: Math.min(size.bytes, maxBatchBytes) };
    };
    const isProven = (cut: { rows: number; bytes: number }): boolean => cut.rows <= proven.rows || cut.bytes <= proven.bytes;
    /**
     * Another batch may join those in flight only on the plain path: no suspect, no failure being
     * cut down, and every batch in flight (and the new one) of several rows, so that only a lone
     * batch ever meets the single-row rules (suspects, skip-ahead); and only at proven limits.
     */
    const mayJoin = (): boolean =>
      inflight.length < maxInFlight && ctx.suspects.length === 0 && halves.length === 0 && inflight.every((f) => f.rows > 1) && isProven(limits());
    /** Cuts the next batch off the pending rows and sends it; false (nothing cut) when it would be a single row joining others. */
    const sendNext = (final: boolean): boolean => {
      const size = this.d.tuner.size;
      const cut = limits();
      const { batch, rows, rest, bound } = cutChunks(pending, cut.rows, cut.bytes);
      if (inflight.length > 0 && rows < 2) return false;
      const restBytes = pendingBytes - batch.length;
      // The stream's last rows, sent alone with everything before them through: the settle may go with them.
      if (
        final &&
        restBytes === 0 &&
        inflight.length === 0 &&
        options.finalSettle &&
        ctx.suspects.length === 0 &&
        halves.length === 0 &&
        stats.unconfirmed === 0
      )
        ctx.settleWith = options.finalSettle;
      pending = rest;
      pendingBytes = restBytes;
      pendingRows -= rows;
      const outcome = this.attempt(batch, ctx, size);
      outcome.then(
        (o) => {
          if (o === 'done' && bound !== 'end') proven[bound] = Math.max(proven[bound], cut[bound]);
          else if (o === 'resend' && isProven(cut)) {
            // A size known good failed for its size: conditions changed, nothing is proven any more.
            proven.rows = 0;
            proven.bytes = 0;
          }
        },
        // Surface a failure at the next await without an unhandled rejection meanwhile.
        () => {},
      );
      inflight.push({ batch, rows, outcome });
      return true;
    };
    const through = (rows: number): void => {
      for (const h of halves) h.rows -= rows;
      halves = halves.filter((h) => h.rows > 0);
    };
    /**
     * Waits for the oldest batch in flight. Done: every row before its last one is through (the
     * older batches were settled first), so the resume point moves there. Failed for its size: the
     * younger batches in flight are waited for, and each of them that failed too goes back to the
     * head of the stream with it, in stream order, to be cut again. The younger ones that were
     * applied meanwhile do not move the resume point (rows before them are not through); the next
     * batch cut from the head does, once it is through.
     */
    const settle = async (): Promise<void> => {
      const oldest = inflight.shift();
      if (!oldest) return;
      if ((await oldest.outcome) === 'done') {
        const last = this.lastRowOf(oldest.batch);
        // Behind an unconfirmed row, the rows are not all through: the resume point waits.
        if (last && ctx.suspects.length === 0) {
          stats.lastRow = last;
          // Before the next batch goes: whatever stops the process now, the next run resumes here.
          await options.onProgress?.(last);
        }
        through(oldest.rows);
        return;
      }
      const back = [oldest];
      const younger = inflight.splice(0);
      // All of them first: a failure that ends the upload leaves none running behind it.
      const outcomes = await Promise.allSettled(younger.map((f) => f.outcome));
      for (const [i, o] of outcomes.entries()) {
        if (o.status === 'rejected') throw o.reason;
        const f = younger[i] as (typeof younger)[number];
        if (o.value === 'done') through(f.rows);
        else back.push(f);
      }
      let ahead = 0;
      for (const b of back) {
        ahead += b.rows;
        halves.push({ maxRows: Math.ceil(b.rows / 2), rows: ahead });
      }
      pending.unshift(...back.map((b) => b.batch));
      for (const b of back) {
        pendingBytes += b.batch.length;
        pendingRows += b.rows;
      }
    };
    /**
     * Sends batches while the pending rows fill one; at the end of the stream (`final`), until all
     * are applied or quarantined. Reading goes on while batches are in flight (at most
     * `maxInFlight`). False when the deadline stopped it.
     */
    const drain = async (final: boolean): Promise<boolean> => {
      for (;;) {
        const size = this.d.tuner.size;
        const full = pendingRows > 0 && (pendingRows >= Math.min(size.rows, maxRows()) || pendingBytes >= Math.min(size.bytes, maxBatchBytes));
        const ready = full || (final && pendingRows > 0);
        if (ready && (inflight.length === 0 || mayJoin())) {
          // Past the deadline no batch starts, but every upload sends one: a run always makes progress.
          if (ctx.recorded > 0 && this.d.budget.exhausted()) return false;
          if (sendNext(final)) continue;
        }
        if (inflight.length > 0 && (ready || final)) {
          await settle();
          continue;
        }
        return true;
      }
    };
    try {
      // Stopping early leaves the stream to its owner: a snapshot's COPY must be read to its end or
      // its connection discarded (local-snapshot.ts), which destroying it here would prevent.
      for await (const chunk of stream.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
        pending.push(chunk);
        pendingBytes += chunk.length;
        pendingRows += countRows(chunk);
        if (!(await drain(false))) {
          stats.complete = false;
          break;
        }
      }
      if (stats.complete && !(await drain(true))) stats.complete = false;
      while (inflight.length > 0) await settle(); // in flight when the deadline stopped the upload
      // COPY text ends every row with a newline: anything left would be a row cut short.
      if (stats.complete && pendingBytes > 0)
        throw new InvariantError(`COPY stream of ${this.label} ended inside a row (${pendingBytes} bytes after the last newline)`);
      // Single rows that failed at the end, with no later batch to show the server is up: ask the
      // server whether it is (a summary); if it answers, they are sent once more (quarantined if they
      // fail again). If it does not, they stay unconfirmed: the upload is incomplete, retried next run.
      if (ctx.suspects.length > 0) await this.confirmSuspects(ctx);
    } finally {
      // A failure leaves no request of this upload running behind the caller's back.
      await Promise.allSettled(inflight.map((f) => f.outcome));
      stream.pause();
    }
    if (ctx.recorded > 0) await this.d.history.prune(this.d.table.name);
    return stats;
  }
}
