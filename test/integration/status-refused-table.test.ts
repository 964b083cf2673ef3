/**
 * `tidemark status` for a table whose first declaration the server refused. The server never
 * accepted the table, so it answers "not declared" for it, and status showed the table as merely
 * `behind`, with no reason: the refusal (here TM_REPLICA_NOT_ADMITTED, the name taken on the server
 * by a table that is not tidemark's) was only in the agent's log. The last run's error is now kept
 * in the local state, and status shows it until a run ends without error.
 */
import { describe, expect, it } from 'vitest';

import { statusState } from '../../src/cli/status-state.js';
import { createDatabase, startTestAgent, startTestServer } from '../support/fixtures.js';

describe('tidemark status, a table the server refused', () => {
  it('says why, until a run succeeds', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await local.query(`create table drifted (id int primary key)`);
    await local.query(`insert into drifted select generate_series(1, 5)`);
    await server.db.query(`create table public.drifted (id int primary key)`); // not tidemark's: its declaration is refused
    const reg = await server.register('acme');
    await using agent = await startTestAgent(local, server, reg);
    await agent.local.tracking.track('drifted');

    const [run] = (await agent.agent.tick()).tables;
    expect(run?.error?.code).toBe('TM_REPLICA_NOT_ADMITTED');
    const [refused] = await agent.agent.status();
    expect(refused?.error).toMatch(/^the server has not accepted this table; the last run failed: .+ \[TM_REPLICA_NOT_ADMITTED\]$/);
    expect(refused && statusState(refused)).toBe('error');

    // The server's admin frees the name: the next run declares the table, and the error is gone.
    await server.db.query(`drop table public.drifted`);
    const [ok] = (await agent.agent.tick()).tables;
    expect(ok?.error).toBeUndefined();
    expect(ok?.converged).toBe(true);
    const [synced] = await agent.agent.status();
    expect(synced?.error).toBeNull();
    expect(synced && statusState(synced)).toBe('in_sync');
  });
});
