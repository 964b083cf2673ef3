/**
 * Agents spread their ticks (docs/scaling.md, Spread ticks): with a schedule of whole minutes, every
 * agent of a fleet would fire at second 0 and a minute's runs would reach the server in one burst.
 * Each agent waits a stable offset after its schedule fires instead, chosen by its database id: the
 * same database always runs at the same second, and a fleet's databases spread evenly over it.
 */
import { createHash } from 'node:crypto';

/** The share of the interval offsets are spread over (the rest leaves a run time before the next tick). */
const SPREAD_SHARE = 0.9;
/** Offsets never exceed a minute, whatever the interval. */
const MAX_SPREAD_MS = 60_000;

/**
 * The offset (ms) of `databaseId`'s ticks after its schedule fires. 0 for a schedule with a
 * seconds field (6 fields: the operator chose the second).
 */
export function tickOffsetMs(databaseId: string, schedule: string, intervalSeconds: number): number {
  if (schedule.trim().split(/\s+/).length !== 5) return 0;
  const span = Math.floor(Math.min(MAX_SPREAD_MS, intervalSeconds * 1000 * SPREAD_SHARE));
  if (span <= 0) return 0;
  const h = createHash('sha256').update(databaseId.toLowerCase()).digest().readUInt32BE(0);
  return h % span;
}
