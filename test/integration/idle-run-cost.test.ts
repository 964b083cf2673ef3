/**
 * What an idle table run costs the server (issue 10, target 1): one request (the declaration,
 * carrying the settle), a few statements and no staging table, COPY or lease write; and an idle run
 * still notices every change.
 */
import pg from 'pg';
import { describe, expect, it } from 'vitest';

import { StatementCounter } from '../../src/server/statement-counter.js';
import { createDatabase, dumpRows, startRecordingAgent, startTestServer } from '../support/fixtures.js';

describe('idle table run', () => {
  it('makes one request, at most 3 statements, no temp table, COPY or lease write, and still sees changes', async () => {
    await using local = await createDatabase('local');
    const counter = new StatementCounter(true);
    await using server = await startTestServer({}, { statements: counter });
    await local.query(`create table items (id int primary key, name text not null)`);
    await local.query(`insert into items select i, 'item ' || i from generate_series(1, 100) i`);
    // A transaction open all along in another database of the cluster (another application, or a
    // concurrent test: CI met it) is in every snapshot's in-progress list; runs stay idle regardless.
    await using elsewhere = await createDatabase('local');
    const holder = new pg.Client({ connectionString: elsewhere.url });
    holder.on('error', () => {});
    await holder.connect();
    await holder.query(`begin`);
    await holder.query(`select pg_current_xact_id()`);
    const reg = await server.register('acme');
    await using agent = await startRecordingAgent(local, server, reg);
    await agent.local.tracking.track('items');
    // The first runs upload and settle; the process then knows the server's state.
    for (let i = 0; i < 2; i++) expect((await agent.agent.tick()).converged).toBe(true);

    for (let run = 0; run < 3; run++) {
      agent.recording.calls.length = 0;
      counter.reset();
      const tick = await agent.agent.tick();
      expect(tick.converged).toBe(true);
      expect(agent.recording.calls.map((c) => `${c.method}${c.settle ? '+settle' : ''}`)).toEqual(['declare+settle']);
      expect(counter.statements).toBeLessThanOrEqual(3);
      expect(counter.transactions).toBeLessThanOrEqual(2);
      const texts = counter.texts.join('\n').toLowerCase();
      expect(texts).not.toMatch(/create temp|copy |tenant_database\s+set\s+lease/);
    }

    // A change after idle runs still goes up (and then the next run is idle again).
    await local.query(`update items set name = 'changed' where id <= 5`);
    await local.query(`insert into items values (1000, 'new')`);
    agent.recording.calls.length = 0;
    counter.reset();
    expect((await agent.agent.tick()).converged).toBe(true);
    expect(agent.recording.uploads().reduce((n, c) => n + (c.rows ?? 0), 0)).toBe(6);
    // A small upload is staged without a temporary table (small-batch.ts), and the settle after it
    // (an empty body) is one update: no staging table at all.
    expect(counter.texts.filter((t) => /create temp table/i.test(t))).toHaveLength(0);
    expect(await dumpRows(server.db, 'public.items')).toEqual(await dumpRows(local, 'public.items'));
    agent.recording.calls.length = 0;
    expect((await agent.agent.tick()).converged).toBe(true);
    expect(agent.recording.calls.map((c) => c.method)).toEqual(['declare']);
    await holder.query(`rollback`);
    await holder.end();
  });
});
