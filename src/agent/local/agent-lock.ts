/**
 * The single-agent lock: a session advisory lock on a connection this agent keeps for its life, so
 * one agent at most runs against a local database. The local database may restart under it
 * (maintenance windows, updates): the connection then dies and the lock with it. The lock rides
 * that out: it logs, reconnects (at once the first time, then backing off with jitter by the class
 * of the failure: short for an unavailable or busy database, long for refused credentials) and
 * re-takes the lock before the next run. If another agent took the lock meanwhile, this one does not
 * run (`ensure()` answers 'busy') until the lock is free again.
 */
import type pg from 'pg';

import { ErrorCode, toError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import { classifyPgError } from '../../shared/pg.js';

/** held: this agent may run; busy: another agent holds the lock; unavailable: the database cannot be reached (backing off). */
export type LockState = 'held' | 'busy' | 'unavailable';

/** Reconnect waits after a failed attempt, in ms: doubling from the base up to the cap, then jittered. */
const SHORT_BACKOFF = { baseMs: 1_000, capMs: 30_000 };
/** Refused credentials (28P01/28000) do not fix themselves in seconds: wait long between attempts. */
const LONG_BACKOFF = { baseMs: 60_000, capMs: 600_000 };

/**
 * How long to wait before the next reconnect after `failures` failed attempts in a row, by the
 * class of the last failure (classifyPgError): a wait in [d/2, d) where d doubles from the base.
 */
export function reconnectDelayMs(error: unknown, failures: number, random: () => number = Math.random): number {
  const { baseMs, capMs } = classifyPgError(error).code === ErrorCode.DB_AUTH_FAILED ? LONG_BACKOFF : SHORT_BACKOFF;
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.max(0, failures - 1));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

const LOCK_KEY_SQL = `hashtext('tidemark.agent')`;

export interface AgentLockOptions {
  /** Epoch ms; injected by tests. */
  now?: () => number;
  random?: () => number;
}

export class AgentLock {
  private client: pg.PoolClient | null = null;
  private readonly onClientError = (e: Error): void => this.lost(e);
  private failures = 0;
  /** No reconnect before this time (epoch ms). */
  private retryAt = 0;
  private readonly now: () => number;
  private readonly random: () => number;
  /** Whether the lock was held before and lost (logged when re-taken). */
  private wasLost = false;

  constructor(
    private readonly pool: pg.Pool,
    private readonly log: Logger,
    options: AgentLockOptions = {},
  ) {
    this.now = options.now ?? Date.now;
    this.random = options.random ?? Math.random;
  }

  get held(): boolean {
    return this.client !== null;
  }

  /** The connection died (the database restarted, or the backend was terminated): the lock is gone with it. */
  private lost(e: unknown): void {
    const client = this.client;
    if (!client) return;
    this.client = null;
    this.wasLost = true;
    client.off('error', this.onClientError);
    // Errors the dead connection may still emit must not crash the process.
    client.on('error', () => {});
    client.release(true);
    this.log.warn({ code: classifyPgError(e).code, error: toError(e).message }, 'agent lock connection lost; re-taking the lock before the next run');
  }

  /**
   * Makes sure this agent holds the lock, re-taking it if its connection died. Never throws. While
   * backing off after failed reconnects, answers 'unavailable' without trying.
   */
  async ensure(): Promise<LockState> {
    if (this.client) {
      try {
        // A connection that died without an event yet (e.g. a half-open socket) fails here.
        await this.client.query(/* sql */ `select 1`);
        return 'held';
      } catch (e) {
        this.lost(e);
      }
    }
    if (this.now() < this.retryAt) return 'unavailable';
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (e) {
      this.failed(e);
      return 'unavailable';
    }
    client.on('error', this.onClientError);
    try {
      const { rows } = await client.query<{ ok: boolean }>(/* sql */ `select pg_try_advisory_lock(${LOCK_KEY_SQL}) as ok`);
      this.failures = 0;
      this.retryAt = 0;
      if (!rows[0]?.ok) {
        client.off('error', this.onClientError);
        client.release();
        return 'busy';
      }
    } catch (e) {
      client.off('error', this.onClientError);
      client.on('error', () => {});
      client.release(true);
      this.failed(e);
      return 'unavailable';
    }
    this.client = client;
    if (this.wasLost) this.log.info({}, 'agent lock re-taken');
    this.wasLost = false;
    return 'held';
  }

  private failed(e: unknown): void {
    this.failures++;
    const delayMs = reconnectDelayMs(e, this.failures, this.random);
    this.retryAt = this.now() + delayMs;
    this.log.warn({ code: classifyPgError(e).code, error: toError(e).message, failures: this.failures, delayMs }, 'local database unavailable; backing off');
  }

  /** Gives the lock up (stopping). */
  async release(): Promise<void> {
    const client = this.client;
    if (!client) return;
    this.client = null;
    client.off('error', this.onClientError);
    client.on('error', () => {});
    try {
      await client.query(/* sql */ `select pg_advisory_unlock(${LOCK_KEY_SQL})`);
      client.release();
    } catch {
      client.release(true);
    }
  }
}
