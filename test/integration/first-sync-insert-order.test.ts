/**
 * First-sync batches of one table (insertOnly) load their staging tables side by side but insert
 * into the replica one after another: a batch takes the table's state row before its insert, so the
 * next one stages while the previous one inserts, and two inserts never interleave in the replica's
 * indexes (which costs PostgreSQL CPU: concurrent inserts at the right edge of a b-tree split its
 * pages half-full). The test holds the state row itself and reads pg_locks: no clock decides.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { gzipSync } from 'node:zlib';

import pg from 'pg';
import { describe, expect, it } from 'vitest';

import { startTestServer } from '../support/fixtures.js';
import { call, declared } from './walls-http.js';

describe('first-sync batches of one table', () => {
  it('stage while an earlier batch holds the table, and insert only once it has committed', async () => {
    await using server = await startTestServer();
    const { reg, path } = await declared(server, 'acme');
    const holder = new pg.Client({ connectionString: server.db.url });
    await holder.connect();
    try {
      // An earlier batch's transaction, as far as the state row is concerned.
      const [{ pid: holderPid }] = (await holder.query<{ pid: number }>('select pg_backend_pid() as pid')).rows as [{ pid: number }];
      await holder.query('begin');
      await holder.query(`select from tidemark.table_state where client_id = $1::text for update`, [reg.clientId]);

      // Compressed: a first-sync batch goes through COPY and a staging table (a small plain body would
      // be parsed into a CTE instead, small-batch.ts).
      const upload = call(server, 'POST', `${path}?insertOnly=true`, {
        key: reg.apiKey,
        body: gzipSync('1\t1\tone\n1\t2\ttwo\n'),
        contentType: 'text/tab-separated-values',
        headers: { 'content-encoding': 'gzip' },
      });
      // The upload's backend: waiting for the state row, its staging table created (and loaded).
      let waiting: { pid: number; staged: boolean; inserted: boolean } | undefined;
      for (let i = 0; !waiting; i++) {
        [waiting] = await server.db.query<{ pid: number; staged: boolean; inserted: boolean }>(
          `select a.pid,
                  -- the staging table: a relation its transaction created (not yet visible to others)
                  exists (select from pg_locks l where l.pid = a.pid and l.locktype = 'relation' and l.mode = 'AccessExclusiveLock'
                                                   and not exists (select from pg_class c where c.oid = l.relation)) as staged,
                  exists (select from pg_locks l where l.pid = a.pid and l.relation = 'public.items'::regclass and l.mode = 'RowExclusiveLock') as inserted
             from pg_stat_activity a
            where a.datname = current_database() and a.wait_event_type = 'Lock' and a.pid <> $1::int`,
          [holderPid],
        );
        if (i > 6000) throw new Error('the upload never waited for the state row');
        if (!waiting) await sleep(10);
      }
      expect(waiting).toMatchObject({ staged: true, inserted: false });
      await holder.query('commit');

      const done = await upload;
      expect(done.status, JSON.stringify(done.body)).toBe(200);
      expect(done.body).toMatchObject({ rowsReceived: 2, rowsInserted: 2 });
      expect(await server.db.query(`select id, name from public.items order by id`)).toEqual([
        { id: 1, name: 'one' },
        { id: 2, name: 'two' },
      ]);
    } finally {
      await holder.end();
    }
  });
});
