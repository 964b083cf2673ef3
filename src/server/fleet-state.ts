/**
 * A database's health from what the server knows of it (fleet-store.ts reads the facts): its state,
 * the fleet's order (worst first), and the admin API's row. Pure: the clock is a parameter.
 */
import { FLEET_STATES, type FleetDatabase, type FleetState } from '../shared/protocol.js';

/** What the server knows of one database, from its agent's last report, its lease and its tables' state. */
export interface FleetFacts {
  clientId: string;
  databaseId: string;
  name: string;
  agentVersion: string | null;
  /** When the agent last reported. */
  reportedAt: Date | null;
  /** The last report in which every table was ok. */
  lastSuccessAt: Date | null;
  /** The last sign of the agent: a report, or a request that renewed its lease. */
  lastSeenAt: Date | null;
  tables: number;
  /** Tables whose last reported run failed. */
  failing: number;
  /** Tables whose last reported run ended behind. */
  behind: number;
  lagSeconds: number | null;
  rowsBehind: number | null;
  quarantinedRows: number;
  /** The first failing table's error code. */
  errorCode: string | null;
  /** Tables whose replica refuses the local schema (TM_REPLICA_SCHEMA_MISMATCH, TM_REPLICA_NOT_ADMITTED, or a blocked schema state). */
  schemaBlocked: number;
  /** When the oldest requested or running resync was requested. */
  resyncSince: Date | null;
  horizonAgeSeconds: number | null;
  /** Reported runs that found rows differing, ever. */
  mismatchRuns: number;
}

export interface FleetClock {
  /** Epoch ms. */
  now: number;
  /** A database whose agent was last seen longer ago is `silent`. */
  silentAfterSeconds: number;
}

/** True when the agent was seen within the silence threshold. */
export function agentUp(f: FleetFacts, clock: FleetClock): boolean {
  return f.lastSeenAt !== null && clock.now - f.lastSeenAt.getTime() <= clock.silentAfterSeconds * 1000;
}

export function fleetState(f: FleetFacts, clock: FleetClock): FleetState {
  if (f.lastSeenAt === null) return 'never';
  if (!agentUp(f, clock)) return 'silent';
  if (f.failing > 0) return 'error';
  if (f.quarantinedRows > 0) return 'quarantine';
  if (f.behind > 0 || (f.rowsBehind ?? 0) > 0) return 'behind';
  if (f.resyncSince !== null) return 'resyncing';
  return 'ok';
}

const RANK = new Map<FleetState, number>(FLEET_STATES.map((s, i) => [s, i]));

/** Worst first: by state (FLEET_STATES order), then by lag, largest first (unknown lag last), then by name. */
export function compareFleet(a: FleetDatabase, b: FleetDatabase): number {
  const byState = (RANK.get(a.state) ?? 0) - (RANK.get(b.state) ?? 0);
  if (byState !== 0) return byState;
  const lag = (b.lagSeconds ?? -1) - (a.lagSeconds ?? -1);
  if (lag !== 0) return lag;
  return a.clientId.localeCompare(b.clientId) || a.name.localeCompare(b.name) || a.databaseId.localeCompare(b.databaseId);
}

export function toFleetDatabase(f: FleetFacts, clock: FleetClock): FleetDatabase {
  const state = fleetState(f, clock);
  return {
    clientId: f.clientId,
    databaseId: f.databaseId,
    name: f.name,
    agentVersion: f.agentVersion,
    lastReportAt: f.reportedAt?.toISOString() ?? null,
    lastSuccessAt: f.lastSuccessAt?.toISOString() ?? null,
    state,
    lagSeconds: f.lagSeconds,
    rowsBehind: f.rowsBehind,
    quarantinedRows: f.quarantinedRows,
    tables: f.tables,
    errorCode: f.errorCode,
  };
}
