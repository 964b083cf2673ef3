/**
 * Issue 9, item 6: the field's fault mix, small and seeded (test/soak/fault-scenario.ts): a TCP
 * proxy resetting connections mid-body and after the response, answering 502/503 and delaying;
 * `tidemark agent` and `tidemark server` killed (SIGKILL) and restarted; the local database
 * restarted (`pg_ctl restart -m immediate`, a dedicated cluster); a seeded writer throughout. It
 * ends with rows equal on both sides, the server's O(1) counts equal to count(*), no quarantined
 * row equal on both sides, and no unhandled error in any process. `npm run soak` runs it longer.
 *
 * The seed is printed; TIDEMARK_FAULT_SEED=<seed> replays it. Runs `dist/` (npm test builds it).
 */
import { describe, expect, inject, it } from 'vitest';

import { DEFAULT_MIX, formatReport, runFaultScenario } from '../soak/fault-scenario.js';
import { createDatabase } from '../support/fixtures.js';

const seed = process.env.TIDEMARK_FAULT_SEED ? Number(process.env.TIDEMARK_FAULT_SEED) : Math.floor(Math.random() * 2 ** 31);

describe('the field fault mix', () => {
  it('loses no row and leaves no stale or wrongly quarantined one through resets, 5xx, kills and database restarts', { timeout: 240_000 }, async () => {
    expect(inject('pgBaseUrl')).toBeTruthy();
    console.log(`fault-injection seed ${seed} (replay: TIDEMARK_FAULT_SEED=${seed})`);
    // The cloud database lives in the shared test cluster (never restarted); the local one in a dedicated cluster.
    await using cloud = await createDatabase('server');
    const t0 = performance.now();
    const progress: string[] = [];
    const report = await runFaultScenario({
      seed,
      cloudUrl: cloud.url,
      cycles: 1,
      roundsPerCycle: 3,
      requestsPerRound: 12,
      items: 1200,
      pairs: 120,
      batchRows: 80,
      mix: DEFAULT_MIX,
      maxSyncAttempts: 3,
      eventTimeoutMs: 60_000,
      progress: (line) => progress.push(`${((performance.now() - t0) / 1000).toFixed(1).padStart(5)} s  ${line}`),
    });
    console.log(`${progress.join('\n')}\n${formatReport(report)}`);
    for (const t of report.tables)
      expect({ table: t.table, lost: t.lost, extra: t.extra, stale: t.stale }).toEqual({ table: t.table, lost: 0, extra: 0, stale: 0 });
    expect(report.violations).toEqual([]);
  });
});
