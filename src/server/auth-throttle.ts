/**
 * Throttles failed authentication (unknown API or admin keys) per source address and per key
 * prefix, in fixed windows on an injected clock.
 *
 *  - An address with `limit` failures in a window gets 429 (Retry-After: the rest of the window)
 *    for every attempt until the window ends, before its key is even looked up.
 *  - A key prefix (the first characters of the presented key) with `limit` failures in a window,
 *    from any addresses, is throttled only for addresses that have themselves failed in the
 *    window: a distributed guess at one key slows down, while the agent that holds the key (whose
 *    address never fails) keeps working. An agent behind the same address as an attacker is
 *    throttled with it; it retries after Retry-After.
 *
 * Memory is bounded: at most `maxEntries` addresses and prefixes are remembered (oldest dropped).
 */
import { ErrorCode } from '../shared/errors.js';
import { RetryLaterError } from './http-errors.js';

export interface AuthThrottleOptions {
  /** Failures per window before throttling. */
  limit: number;
  windowSeconds: number;
  /** Milliseconds since the epoch (injected; Date.now in production). */
  now: () => number;
  maxEntries?: number;
}

interface Window {
  startMs: number;
  failures: number;
}

/** Characters of a presented key that identify it for the per-prefix count (`tmk_` and 8 more). */
const PREFIX_LENGTH = 12;

export function keyPrefix(key: string): string {
  return key.slice(0, PREFIX_LENGTH);
}

class WindowCounter {
  private readonly windows = new Map<string, Window>();

  constructor(
    private readonly windowMs: number,
    private readonly maxEntries: number,
  ) {}

  private current(id: string, nowMs: number): Window | undefined {
    const w = this.windows.get(id);
    if (w && nowMs - w.startMs < this.windowMs) return w;
    if (w) this.windows.delete(id);
    return undefined;
  }

  failures(id: string, nowMs: number): number {
    return this.current(id, nowMs)?.failures ?? 0;
  }

  /** Seconds until the window of `id` ends (at least 1). */
  secondsLeft(id: string, nowMs: number): number {
    const w = this.current(id, nowMs);
    return w ? Math.max(1, Math.ceil((w.startMs + this.windowMs - nowMs) / 1000)) : 0;
  }

  add(id: string, nowMs: number): void {
    const w = this.current(id, nowMs);
    if (w) {
      w.failures++;
      return;
    }
    if (this.windows.size >= this.maxEntries) {
      for (const [k, old] of this.windows) if (nowMs - old.startMs >= this.windowMs) this.windows.delete(k);
      // Still full: forget the oldest window (Map keeps insertion order).
      const oldest = this.windows.keys().next();
      if (this.windows.size >= this.maxEntries && !oldest.done) this.windows.delete(oldest.value);
    }
    this.windows.set(id, { startMs: nowMs, failures: 1 });
  }
}

export class AuthThrottle {
  private readonly byAddress: WindowCounter;
  private readonly byPrefix: WindowCounter;

  constructor(private readonly options: AuthThrottleOptions) {
    const windowMs = options.windowSeconds * 1000;
    const max = options.maxEntries ?? 100_000;
    this.byAddress = new WindowCounter(windowMs, max);
    this.byPrefix = new WindowCounter(windowMs, max);
  }

  /** Seconds the caller must wait before its key is checked, or 0 when it may try now. */
  retryAfterSeconds(address: string, key: string): number {
    const now = this.options.now();
    const { limit } = this.options;
    const addressFailures = this.byAddress.failures(address, now);
    if (addressFailures >= limit) return this.byAddress.secondsLeft(address, now);
    const prefix = keyPrefix(key);
    if (addressFailures > 0 && this.byPrefix.failures(prefix, now) >= limit) return this.byPrefix.secondsLeft(prefix, now);
    return 0;
  }

  recordFailure(address: string, key: string): void {
    const now = this.options.now();
    this.byAddress.add(address, now);
    this.byPrefix.add(keyPrefix(key), now);
  }
}

/**
 * Runs a key check under the throttle: 429 before the check while the caller is throttled, and
 * the failure counted (and in the metric) when the check finds no such key.
 */
export type AuthGate = <T>(req: { ip: string }, key: string, check: () => Promise<T | null>) => Promise<T | null>;

export function authGate(throttle: AuthThrottle, metrics: { authFailures: { inc(labels: { outcome: string }): void } }): AuthGate {
  return async (req, key, check) => {
    const wait = throttle.retryAfterSeconds(req.ip, key);
    if (wait > 0) {
      metrics.authFailures.inc({ outcome: 'throttled' });
      throw new RetryLaterError(ErrorCode.AUTH_UNAUTHENTICATED, 429, `too many failed authentications; retry after ${wait} s`, wait);
    }
    const result = await check();
    if (result === null) {
      throttle.recordFailure(req.ip, key);
      metrics.authFailures.inc({ outcome: 'rejected' });
    }
    return result;
  };
}
