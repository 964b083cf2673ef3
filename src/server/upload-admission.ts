/**
 * Admission control of uploads (issue 10, fan-in): at most `maxConcurrent` uploads with a body
 * load rows into the database at once; the others wait here, in arrival order, without holding a
 * database connection, and are answered 503 TM_SERVER_OVERLOADED with Retry-After once they have
 * waited `maxWaitMs`. Without it, many agents' first syncs at once each took a pool connection for
 * the whole COPY: the small requests (declarations, idle runs) then timed out waiting for a
 * connection (500s, before load shedding), and the COPYs themselves queued on the replica table's
 * extension lock (`Lock:extend`), so 32 concurrent uploads loaded fewer rows a second than 8.
 *
 * A waiting upload's body stays unread in the socket (TCP backpressure), so the queue costs no memory
 * beyond the connections. The wait is bounded well below the agent's batch timeout (60 s by
 * default), so a queued batch is never read as too large by the agent's tuner.
 */
import { EventEmitter } from 'node:events';

import { ErrorCode, InvariantError } from '../shared/errors.js';
import { RetryLaterError } from './http-errors.js';

/** Arms a one-shot timer; returns its cancel. Injected by tests, which then fire it themselves. */
export type QueueTimer = (ms: number, fire: () => void) => () => void;

const realTimer: QueueTimer = (ms, fire) => {
  const t = setTimeout(fire, ms);
  return () => clearTimeout(t);
};

export interface UploadAdmissionOptions {
  /** Uploads loading rows at once. */
  maxConcurrent: number;
  /** Longest wait in the queue, in milliseconds, before the answer is 503 with Retry-After. */
  maxWaitMs: number;
  /** What the 503's Retry-After says, in seconds. */
  retryAfterSeconds: number;
  /**
   * Bodies declared smaller than this (Content-Length) load without a slot: a steady-state run's few
   * changed rows take milliseconds and add no extension-lock contention, so they do not wait behind
   * other tenants' first syncs. A body of unknown length (chunked) always takes a slot.
   */
  minBytes?: number;
  timer?: QueueTimer;
}

interface Waiter {
  admit: () => void;
  cancel: () => void;
}

/**
 * Events (for tests and metrics): 'admitted' when an upload gets a slot, 'queued' when one starts
 * to wait, 'shed' when one waited too long.
 */
export class UploadAdmission extends EventEmitter {
  private active = 0;
  private readonly queue: Waiter[] = [];
  private readonly timer: QueueTimer;

  constructor(private readonly options: UploadAdmissionOptions) {
    super();
    if (!Number.isInteger(options.maxConcurrent) || options.maxConcurrent < 1) throw new InvariantError('maxConcurrent must be a positive integer');
    this.timer = options.timer ?? realTimer;
  }

  /** Uploads loading rows now, and uploads waiting for a slot. */
  stats(): { active: number; waiting: number } {
    return { active: this.active, waiting: this.queue.length };
  }

  /**
   * Waits for a slot for a body of `bytes` (NaN: unknown); returns its release (idempotent: call it
   * in `finally`). Throws a 503 RetryLaterError once the wait bound passes; the upload then has
   * written nothing. A body smaller than `minBytes` needs no slot.
   */
  async enter(bytes = Number.NaN): Promise<() => void> {
    if (bytes < (this.options.minBytes ?? 0)) return () => {};
    if (this.active < this.options.maxConcurrent && this.queue.length === 0) return this.take();
    await new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        admit: () => {
          waiter.cancel();
          resolve();
        },
        cancel: () => {},
      };
      waiter.cancel = this.timer(this.options.maxWaitMs, () => {
        const i = this.queue.indexOf(waiter);
        if (i < 0) return; // admitted meanwhile
        this.queue.splice(i, 1);
        this.emit('shed');
        reject(
          new RetryLaterError(
            ErrorCode.SERVER_OVERLOADED,
            503,
            `the server is loading other uploads and this one waited ${Math.round(this.options.maxWaitMs / 1000)} s for its turn; retry in ${this.options.retryAfterSeconds} s`,
            this.options.retryAfterSeconds,
          ),
        );
      });
      this.queue.push(waiter);
      this.emit('queued');
    });
    // The slot was handed over by release(): `active` already counts this upload.
    return this.releaser();
  }

  private take(): () => void {
    this.active++;
    this.emit('admitted');
    return this.releaser();
  }

  private releaser(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const next = this.queue.shift();
      if (next) {
        // The slot passes straight to the first waiter: no newcomer can overtake the queue.
        this.emit('admitted');
        next.admit();
      } else this.active--;
    };
  }
}
