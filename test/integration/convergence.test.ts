import pg from 'pg';
import { describe, expect, it } from 'vitest';

import { createDatabase, dumpRows, startTestAgent, startTestServer } from '../support/fixtures.js';
import { seededRandom } from '../support/seeded-random.js';

const TABLES = /* sql */ `
  create table t_int (id int primary key, label text, amount numeric(14,4), at timestamptz, doc jsonb);
  create table t_composite (a text, b int, payload bytea, flags boolean[], note varchar(50), primary key (a, b));
  create schema "Other Schema";
  create table "Other Schema"."Mixed.Case" ("Id" uuid primary key, "Day" date, tags text[], big bigint, ts timestamp);`;

const NAMES = ['public.t_int', 'public.t_composite', '"Other Schema"."Mixed.Case"'];

const NASTY = [
  '',
  'plain',
  'tab\there',
  'new\nline',
  'back\\slash',
  'quote"s',
  "apos'trophe",
  'héllo wörld',
  '日本語',
  '🦀 crab',
  'comma,semi;',
  '\\N',
  'NULL',
];

describe('randomized convergence', () => {
  it('keeps the remote equal to local through random inserts, updates and deletes', async () => {
    const seed = Number(process.env.TIDEMARK_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));
    console.log(`randomized convergence seed=${seed} (rerun with TIDEMARK_TEST_SEED=${seed})`);
    const rnd = seededRandom(seed);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
    const int = (n: number): number => Math.floor(rnd() * n);
    const text = (): string => `${pick(NASTY)}${int(3) === 0 ? pick(NASTY) : ''}`;

    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await local.query(TABLES);
    const reg = await server.register('acme');
    await using agent = await startTestAgent(local, server, reg, { batch: { initialBytes: 4096, minBytes: 1024 } });
    for (const t of NAMES) await agent.local.tracking.track(t);

    const c = new pg.Client({ connectionString: local.url });
    await c.connect();
    const open = new pg.Client({ connectionString: local.url }); // a transaction that spans a run
    await open.connect();
    try {
      const ops = async (db: pg.Client, n: number): Promise<void> => {
        for (let i = 0; i < n; i++) {
          const which = int(3);
          const action = int(10); // 0-4 insert, 5-7 update, 8 delete, 9 key update
          if (which === 0) {
            const id = int(400);
            if (action <= 4)
              await db.query(`insert into t_int values ($1, $2, $3, $4, $5) on conflict (id) do update set label = excluded.label`, [
                id,
                int(5) === 0 ? null : text(),
                (rnd() * 1e6 - 5e5).toFixed(4),
                new Date(Date.UTC(2000 + int(30), int(12), 1 + int(28), int(24), int(60), int(60), int(1000))).toISOString(),
                JSON.stringify({ k: text(), n: int(100), nested: [int(5), null, text()] }),
              ]);
            else if (action <= 7) await db.query(`update t_int set amount = amount + 1, label = $2 where id = $1`, [id, text()]);
            else if (action === 8) await db.query(`delete from t_int where id = $1`, [id]);
            else await db.query(`update t_int set id = $2 where id = $1 and not exists (select from t_int where id = $2)`, [id, 400 + int(400)]);
          } else if (which === 1) {
            const a = pick(NASTY);
            const b = int(30);
            if (action <= 4)
              await db.query(`insert into t_composite values ($1, $2, $3, $4, $5) on conflict (a, b) do update set payload = excluded.payload`, [
                a,
                b,
                Buffer.from(Array.from({ length: int(40) }, () => int(256))),
                int(4) === 0 ? null : [rnd() < 0.5, null, true],
                int(3) === 0 ? null : text().slice(0, 50),
              ]);
            else if (action <= 7) await db.query(`update t_composite set note = $3 where a = $1 and b = $2`, [a, b, text().slice(0, 50)]);
            else await db.query(`delete from t_composite where a = $1 and b = $2`, [a, b]);
          } else {
            if (action <= 5)
              await db.query(`insert into "Other Schema"."Mixed.Case" values (gen_random_uuid(), $1, $2, $3, $4)`, [
                `20${10 + int(20)}-0${1 + int(9)}-1${int(9)}`,
                [text(), null, text()],
                int(2) === 0 ? null : String(BigInt(int(2 ** 31)) * 4294967296n + BigInt(int(2 ** 31))),
                int(2) === 0 ? null : '2020-01-01 12:34:56.789',
              ]);
            else if (action <= 7)
              await db.query(
                `update "Other Schema"."Mixed.Case" set big = coalesce(big, 0) + 1 where "Id" = (select "Id" from "Other Schema"."Mixed.Case" order by "Id" limit 1 offset $1)`,
                [int(20)],
              );
            else
              await db.query(
                `delete from "Other Schema"."Mixed.Case" where "Id" = (select "Id" from "Other Schema"."Mixed.Case" order by "Id" limit 1 offset $1)`,
                [int(20)],
              );
          }
        }
      };

      let pendingOpen = false;
      for (let round = 0; round < 10; round++) {
        await ops(c, 20 + int(120));
        if (!pendingOpen && int(2) === 0) {
          // Starts before the run, commits after it: its rows carry versions below the run's horizon.
          await open.query('begin');
          await open.query(`insert into t_int values ($1, 'from an open transaction', 1, now(), '{}') on conflict do nothing`, [800 + round]);
          await ops(open, 3);
          pendingOpen = true;
        }
        const result = await agent.agent.tick({ checkCount: true });
        for (const t of result.tables) expect(t.error, `seed=${seed} round=${round} ${t.table}`).toBeUndefined();
        if (pendingOpen) {
          await open.query('commit');
          pendingOpen = false;
          const after = await agent.agent.tick({ checkCount: true });
          expect(after.converged, `seed=${seed} round=${round}`).toBe(true);
        } else expect(result.converged, `seed=${seed} round=${round}`).toBe(true);
        for (const t of ['public.t_int', 'public.t_composite', '"Other Schema"."Mixed.Case"']) {
          const where = `tidemark_database_id = '${reg.databaseId}'`;
          expect(await dumpRows(server.db, t, { where }), `seed=${seed} round=${round} ${t}`).toEqual(await dumpRows(local, t));
        }
      }
    } finally {
      await open.end();
      await c.end();
    }
  });
});
