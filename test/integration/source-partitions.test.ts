import { describe, expect, it } from 'vitest';

import { PgTableTracking } from '../../src/agent/local/table-tracking.js';
import { createDatabase, dumpRows, startTestAgent, startTestServer, type TestDatabase } from '../support/fixtures.js';

/**
 * Runs SQL and then makes the session publish its statistics before answering: the flush happens
 * when the backend goes idle after the statement, so the counters are visible once this resolves.
 */
async function writeAndPublish(db: TestDatabase, sql: string): Promise<void> {
  await db.query(`${sql}; select pg_stat_force_next_flush()`);
}

/** Leaf partitions of a table and whether each has a valid index leading with tidemark_version, and the trigger (enabled ALWAYS). */
async function leaves(db: TestDatabase, table: string) {
  return db.query<{ leaf: string; indexed: boolean; trigger: string | null }>(
    `select p.relid::regclass::text as leaf,
            exists (select from pg_index i join pg_attribute a on a.attrelid = i.indrelid and a.attnum = i.indkey[0]
                     where i.indrelid = p.relid and i.indisvalid and a.attname = 'tidemark_version') as indexed,
            (select tgenabled::text from pg_trigger where tgrelid = p.relid and tgname = 'tidemark_stamp_version') as trigger
       from pg_partition_tree($1::regclass) p where p.isleaf order by 1`,
    [table],
  );
}

describe('partitioned tables', () => {
  it('tracks a partitioned table as one table: every partition indexed, new partitions picked up, deletes in any partition synced', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await local.query(`
      create table events (id int not null, region text not null, payload text, primary key (id, region)) partition by list (region);
      create table events_eu partition of events for values in ('eu');
      create table events_us partition of events for values in ('us');
      create table events_asia partition of events for values in ('asia') partition by range (id);
      create table events_asia_low partition of events_asia for values from (0) to (1000);
      create table events_asia_high partition of events_asia for values from (1000) to (maxvalue);
      insert into events select i, (array['eu', 'us', 'asia'])[1 + i % 3], 'p' || i from generate_series(1, 1500) i;`);
    const reg = await server.register('acme');
    await using agent = await startTestAgent(local, server, reg);
    const tracked = await agent.local.tracking.track('events');
    expect(tracked.shape.keyColumns).toEqual(['id', 'region']);
    // The parent's index is valid (every partition has its own attached), the trigger is on every leaf.
    const [parentIndex] = await local.query<{ valid: boolean }>(
      `select i.indisvalid as valid from pg_index i join pg_class c on c.oid = i.indexrelid where i.indrelid = 'events'::regclass and c.relname = 'events_tidemark_version_idx'`,
    );
    expect(parentIndex?.valid).toBe(true);
    expect(await leaves(local, 'events')).toEqual(
      ['events_asia_high', 'events_asia_low', 'events_eu', 'events_us'].map((leaf) => ({ leaf, indexed: true, trigger: 'A' })),
    );
    // Tracking again changes nothing and fails nothing.
    await agent.local.tracking.track('events');

    const first = await agent.agent.tick({ checkCount: true });
    expect(first.tables[0]?.error).toBeUndefined();
    expect(first.converged).toBe(true);
    const same = async () =>
      expect(await dumpRows(server.db, 'public.events', { where: `tidemark_database_id = '${reg.databaseId}'` })).toEqual(
        await dumpRows(local, 'public.events'),
      );
    await same();

    // A partition created later gets the index and the trigger from the parent, and its rows sync.
    await local.query(`create table events_sa partition of events for values in ('sa')`);
    await local.query(`insert into events select i, 'sa', 'new' from generate_series(2001, 2100) i`);
    await local.query(`update events set payload = 'changed' where id = 2 and region = 'asia'`);
    expect((await leaves(local, 'events')).find((l) => l.leaf === 'events_sa')).toEqual({ leaf: 'events_sa', indexed: true, trigger: 'A' });
    const second = await agent.agent.tick({ checkCount: false });
    expect(second.tables[0]?.rowsUploaded).toBe(101);
    expect(second.converged).toBe(true);
    await same();

    // Old rows (no new version) deleted in two partitions: the partitions' delete counters tell the run.
    await writeAndPublish(local, `delete from events where (id, region) in ((3, 'eu'), (1001, 'asia'))`);
    const third = await agent.agent.tick({ checkCount: false });
    expect(third.tables[0]?.rowsDeleted).toBe(2);
    expect(third.converged).toBe(true);
    await same();
  });

  it('track is all or nothing: a failure leaves the table as it was', async () => {
    await using local = await createDatabase('local');
    await local.query(`
      create table docs (doc json not null, note text);
      create table parted (doc json not null, day int not null) partition by range (day);
      create table parted_1 partition of parted for values from (0) to (10);
      insert into docs values ('{"a": 1}', 'x');
      insert into parted values ('{"a": 1}', 1);`);
    const tracking = new PgTableTracking(local.pool);
    const state = async (table: string) =>
      local.query(
        `select (select count(*)::int from pg_attribute a join pg_partition_tree($1::regclass) p on a.attrelid = p.relid where a.attname = 'tidemark_version' and not a.attisdropped) as columns,
                (select count(*)::int from pg_trigger t join pg_partition_tree($1::regclass) p on t.tgrelid = p.relid where t.tgname = 'tidemark_stamp_version') as triggers,
                (select count(*)::int from pg_index i join pg_partition_tree($1::regclass) p on i.indrelid = p.relid) as indexes,
                (select count(*)::int from tidemark.tracked_table where table_name = $2::text) as tracked`,
        [table, table],
      );
    // json has no btree operator class: the (version, key) index cannot be built.
    for (const table of ['docs', 'parted']) {
      await expect(tracking.track(table, { keyColumns: ['doc'] })).rejects.toThrow(/tracking public\.\w+ failed/);
      expect(await state(table)).toEqual([{ columns: 0, triggers: 0, indexes: 0, tracked: 0 }]);
    }
    // The tables still take writes as before.
    await local.query(`insert into docs values ('{"b": 2}', 'y'); insert into parted values ('{"b": 2}', 2)`);
  });
});
