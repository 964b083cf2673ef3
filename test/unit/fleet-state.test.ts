import { describe, expect, it } from 'vitest';
import { emptyResult } from '../../src/agent/run-context.js';
import { outcomeOf } from '../../src/agent/run-report.js';
import { compareFleet, type FleetFacts, fleetState, toFleetDatabase } from '../../src/server/fleet-state.js';

const NOW = Date.parse('2026-01-01T12:00:00Z');
const clock = { now: NOW, silentAfterSeconds: 900 };

function facts(over: Partial<FleetFacts> = {}): FleetFacts {
  return {
    clientId: 'acme',
    databaseId: '00000000-0000-4000-8000-000000000001',
    name: 'Lyon',
    agentVersion: '0.1.0',
    reportedAt: new Date(NOW - 60_000),
    lastSuccessAt: new Date(NOW - 60_000),
    lastSeenAt: new Date(NOW - 60_000),
    tables: 1,
    failing: 0,
    behind: 0,
    lagSeconds: 0,
    rowsBehind: 0,
    quarantinedRows: 0,
    errorCode: null,
    schemaBlocked: 0,
    resyncSince: null,
    horizonAgeSeconds: 0,
    mismatchRuns: 0,
    ...over,
  };
}

describe('fleet state', () => {
  it('takes the worst condition: never, silent, error, quarantine, behind, resyncing, ok', () => {
    expect(fleetState(facts({ lastSeenAt: null }), clock)).toBe('never');
    expect(fleetState(facts({ lastSeenAt: new Date(NOW - 901_000), failing: 1 }), clock)).toBe('silent');
    expect(fleetState(facts({ lastSeenAt: new Date(NOW - 900_000) }), clock)).toBe('ok');
    expect(fleetState(facts({ failing: 1, quarantinedRows: 2 }), clock)).toBe('error');
    expect(fleetState(facts({ quarantinedRows: 2, behind: 1 }), clock)).toBe('quarantine');
    expect(fleetState(facts({ behind: 1, resyncSince: new Date(NOW) }), clock)).toBe('behind');
    expect(fleetState(facts({ rowsBehind: 3 }), clock)).toBe('behind');
    expect(fleetState(facts({ resyncSince: new Date(NOW) }), clock)).toBe('resyncing');
  });

  it('sorts worst first, then by lag (largest first, unknown last), then by client and name', () => {
    const rows = [
      facts({ name: 'ok-small', lagSeconds: 1 }),
      facts({ name: 'behind-5', behind: 1, lagSeconds: 5 }),
      facts({ name: 'never', lastSeenAt: null, lagSeconds: null }),
      facts({ name: 'behind-500', behind: 1, lagSeconds: 500 }),
      facts({ name: 'behind-unknown', behind: 1, lagSeconds: null }),
      facts({ name: 'ok-big', lagSeconds: 90 }),
      facts({ name: 'error', failing: 1 }),
    ].map((f) => toFleetDatabase(f, clock));
    expect(rows.sort(compareFleet).map((d) => d.name)).toEqual(['never', 'error', 'behind-500', 'behind-5', 'behind-unknown', 'ok-big', 'ok-small']);
  });
});

describe('run report outcome', () => {
  it('is ok when converged, behind without an error or when the budget ran out, error otherwise', () => {
    expect(outcomeOf({ ...emptyResult('public.a'), converged: true })).toBe('ok');
    expect(outcomeOf(emptyResult('public.a'))).toBe('behind');
    expect(outcomeOf({ ...emptyResult('public.a'), error: { code: 'TM_RUN_INCOMPLETE', message: 'budget' } })).toBe('behind');
    expect(outcomeOf({ ...emptyResult('public.a'), error: { code: 'TM_SERVER_UNAVAILABLE', message: 'down' } })).toBe('error');
  });
});
