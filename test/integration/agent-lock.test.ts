/**
 * The agent rides out its local database restarting (issue 9.1). pg_terminate_backend of the
 * agent's connections takes the same path as a restart ("terminating connection due to
 * administrator command", then "Connection terminated unexpectedly"): the process must not crash,
 * the single-agent lock is re-taken before the next run, and an agent that took the lock meanwhile
 * keeps this one from running.
 */
import { describe, expect, it } from 'vitest';

import {
  createDatabase,
  dumpRows,
  startRecordingAgent,
  startTestAgent,
  startTestServer,
  TEST_AGENT_APPLICATION,
  type TestAgent,
  type TestDatabase,
  terminateAgentBackends,
} from '../support/fixtures.js';

/** Backends of the test agents holding the single-agent advisory lock. */
async function lockHolders(local: TestDatabase): Promise<number> {
  const rows = await local.query<{ n: number }>(
    `select count(*)::int as n from pg_locks l join pg_stat_activity a on a.pid = l.pid
      where l.locktype = 'advisory' and l.granted and a.application_name = $1::text and l.database = (select oid from pg_database where datname = current_database())`,
    [TEST_AGENT_APPLICATION],
  );
  return rows[0]?.n ?? 0;
}

/** Waits until the agent has seen its lock connection die (however long that takes on a busy machine: the test's timeout is the safety net). */
async function untilLockLost(agent: TestAgent): Promise<void> {
  while (agent.agent.lock.held) await new Promise((r) => setTimeout(r, 5));
  expect(agent.agent.lock.held).toBe(false);
}

async function setUp() {
  const local = await createDatabase('local');
  const server = await startTestServer();
  await local.query(`create table items (id int primary key, name text not null)`);
  await local.query(`insert into items select i, 'item ' || i from generate_series(1, 100) i`);
  const reg = await server.register('acme');
  return { local, server, reg };
}

describe('agent lock across local database restarts', () => {
  it('survives its connections being terminated and re-takes the lock before the next run', async () => {
    const { local, server, reg } = await setUp();
    await using _l = local;
    await using _s = server;
    await using agent = await startTestAgent(local, server, reg);
    await agent.local.tracking.track('items');
    expect((await agent.agent.tickOnce())?.converged).toBe(true);
    expect(await lockHolders(local)).toBe(1);

    expect(await terminateAgentBackends(local)).toBeGreaterThan(0);
    await untilLockLost(agent);
    expect(await lockHolders(local)).toBe(0);

    await local.query(`insert into items select i, 'late ' || i from generate_series(101, 150) i`);
    const next = await agent.agent.tickOnce();
    expect(next?.converged).toBe(true);
    expect(next?.tables[0]?.rowsUploaded).toBe(50);
    expect(await lockHolders(local)).toBe(1);
    expect(await dumpRows(server.db, 'public.items')).toEqual(await dumpRows(local, 'public.items'));
  });

  it('does not run while another agent holds the lock it took during the disconnection', async () => {
    const { local, server, reg } = await setUp();
    await using _l = local;
    await using _s = server;
    await using first = await startTestAgent(local, server, reg);
    await first.local.tracking.track('items');
    expect((await first.agent.tickOnce())?.converged).toBe(true);
    await terminateAgentBackends(local);
    await untilLockLost(first);

    const second = await startTestAgent(local, server, reg);
    expect(await second.agent.lock.ensure()).toBe('held');
    await local.query(`update items set name = 'changed' where id = 1`);
    expect(await first.agent.tickOnce()).toBeNull();
    expect(await first.agent.lock.ensure()).toBe('busy');
    expect(await server.db.query(`select name from items where id = 1`)).toEqual([{ name: 'item 1' }]);
    expect(await lockHolders(local)).toBe(1);

    // The other agent stops: this one takes the lock over and runs.
    await second[Symbol.asyncDispose]();
    expect((await first.agent.tickOnce())?.converged).toBe(true);
    expect(await server.db.query(`select name from items where id = 1`)).toEqual([{ name: 'changed' }]);
  });

  it('fails only the run in flight when its connections die mid-run, and converges on the next', async () => {
    const { local, server, reg } = await setUp();
    await using _l = local;
    await using _s = server;
    await using agent = await startRecordingAgent(local, server, reg);
    const { recording } = agent;
    await agent.local.tracking.track('items');
    let terminated = false;
    recording.beforeCall = async (call) => {
      if (call.method === 'upload' && (call.rows ?? 0) > 0 && !terminated) {
        terminated = true;
        await terminateAgentBackends(local);
      }
    };
    const broken = await agent.agent.tickOnce();
    expect(terminated).toBe(true);
    expect(broken?.converged).toBe(false);
    expect(broken?.tables[0]?.error?.code).toBe('TM_DB_UNAVAILABLE');
    await untilLockLost(agent);

    const next = await agent.agent.tickOnce();
    expect(next?.converged).toBe(true);
    expect(await lockHolders(local)).toBe(1);
    expect(await dumpRows(server.db, 'public.items')).toEqual(await dumpRows(local, 'public.items'));
  });
});
