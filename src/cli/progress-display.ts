/**
 * The live lines of `sync --once` on a terminal, one per table, like pgcopydb or `pv`: rows sent,
 * rows/s, MB/s, and with the local count estimate a percent and an ETA. Redrawn in place (ANSI
 * cursor movement) at most every `minIntervalMs`, and when a table finishes; cleared at the end,
 * when the summary is printed. Used only when stdout is a TTY: a pipe gets the summary alone.
 */
import type { TableProgress } from '../agent/run-progress.js';

const MB = 1_000_000;

function grouped(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

function clock(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** One table's line: `public.items  120,000 / ~2,000,000 rows  6%  48,210 rows/s  5.1 MB/s  ETA 0:39`. */
export function formatProgress(p: TableProgress): string {
  const seconds = p.elapsedSeconds > 0 ? p.elapsedSeconds : 0;
  const rate = seconds > 0 ? p.rowsSent / seconds : 0;
  const mbs = seconds > 0 ? p.bytesSent / MB / seconds : 0;
  const parts = [p.table];
  const expected = p.rowsExpected !== null && p.rowsExpected >= p.rowsSent ? p.rowsExpected : null;
  parts.push(expected !== null ? `${grouped(p.rowsSent)} / ~${grouped(expected)} rows` : `${grouped(p.rowsSent)} rows`);
  if (p.done) parts.push('done');
  else if (expected !== null) parts.push(`${Math.floor((100 * p.rowsSent) / Math.max(expected, 1))}%`);
  parts.push(`${grouped(rate)} rows/s`, `${mbs.toFixed(1)} MB/s`);
  if (p.done) parts.push(`${seconds.toFixed(1)} s`);
  else if (expected !== null && rate > 0) parts.push(`ETA ${clock((expected - p.rowsSent) / rate)}`);
  return parts.join('  ');
}

export class ProgressDisplay {
  private readonly tables = new Map<string, TableProgress>();
  private drawn = 0;
  private lastDrawMs = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly out: { write(text: string): unknown },
    private readonly minIntervalMs = 100,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** A ProgressListener: records the table's figures and redraws when due. */
  readonly update = (p: TableProgress): void => {
    const before = this.tables.get(p.table);
    // The final report does not know the estimate: keep the one the run started with.
    this.tables.set(p.table, { ...p, rowsExpected: p.rowsExpected ?? before?.rowsExpected ?? null });
    const t = this.now();
    if (p.done || before === undefined || t - this.lastDrawMs >= this.minIntervalMs) {
      this.lastDrawMs = t;
      this.draw();
    }
  };

  private draw(): void {
    let text = this.drawn > 0 ? `\x1b[${this.drawn}F` : '';
    for (const p of this.tables.values()) text += `\x1b[2K${formatProgress(p)}\n`;
    this.drawn = this.tables.size;
    this.out.write(text);
  }

  /** Removes the live lines (the summary follows). */
  finish(): void {
    if (this.drawn > 0) this.out.write(`\x1b[${this.drawn}F\x1b[0J`);
    this.drawn = 0;
  }
}
