/**
 * deploy/compose/postgres-init.sh, the first-start script of compose.yaml's PostgreSQL, run with
 * psql as the postgres image runs it: the role it creates is a plain one (row-level security
 * applies to it) and has exactly enough to run the server: migrate, register a database, create a
 * replica in schema public. Without psql the test is skipped, saying so, except under CI=true.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';

import pg from 'pg';
import { describe, expect, inject, it } from 'vitest';

import { createDatabase, startTestServer } from '../support/fixtures.js';

const SCRIPT = join(import.meta.dirname, '../../deploy/compose/postgres-init.sh');
const ROLE = 'tidemark_server';

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env }, (err, _stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 127) : 0, stderr }));
  });
}

describe('compose PostgreSQL init script', () => {
  it('creates a plain role that can run the server: migrations, registration, replicas in public', async (ctx) => {
    if ((await run('psql', ['--version'], process.env)).code !== 0) {
      const why = 'psql not found (apt-get install postgresql-client): deploy/compose/postgres-init.sh was not run';
      if (process.env.CI === 'true') throw new Error(`${why}; CI must have it`);
      process.stderr.write(`SKIPPED: ${why}\n`);
      ctx.skip(why);
      return;
    }
    const base = new URL(inject('pgBaseUrl'));
    const admin = new pg.Client({ connectionString: `${base.toString()}postgres` });
    await admin.connect();
    try {
      // The role is cluster-wide: a leftover from an earlier run on an external test server goes first.
      if ((await admin.query(`select 1 from pg_roles where rolname = $1`, [ROLE])).rowCount) {
        throw new Error(`role ${ROLE} already exists on the test server: drop it (drop owned by ${ROLE}; drop role ${ROLE})`);
      }
      await using cloud = await createDatabase('local');
      const password = randomBytes(9).toString('base64url');
      const init = await run('sh', [SCRIPT], {
        PATH: process.env.PATH ?? '',
        PGHOST: base.hostname,
        PGPORT: base.port,
        PGPASSWORD: decodeURIComponent(base.password),
        POSTGRES_USER: decodeURIComponent(base.username),
        POSTGRES_DB: cloud.name,
        TIDEMARK_DB_PASSWORD: password,
      });
      expect(init.code, init.stderr).toBe(0);
      try {
        const [role] = await cloud.query<{ rolsuper: boolean; rolbypassrls: boolean }>(`select rolsuper, rolbypassrls from pg_roles where rolname = $1`, [
          ROLE,
        ]);
        expect(role).toEqual({ rolsuper: false, rolbypassrls: false });

        const url = new URL(cloud.url);
        url.username = ROLE;
        url.password = password;
        await using server = await startTestServer({ databaseUrl: url.toString() });
        const reg = await server.register('acme');
        const res = await fetch(`${server.url}/v1/customers/acme/databases/${reg.databaseId}/tables/${encodeURIComponent('public.items')}`, {
          method: 'PUT',
          headers: { authorization: `Bearer ${reg.apiKey}`, 'x-tidemark-agent-id': randomBytes(8).toString('hex'), 'content-type': 'application/json' },
          body: JSON.stringify({
            columns: [
              { name: 'tidemark_version', type: 'bigint', notNull: true },
              { name: 'id', type: 'integer', notNull: true },
              { name: 'name', type: 'text', notNull: false },
            ],
            keyColumns: ['id'],
          }),
        });
        expect(res.status, await res.clone().text()).toBe(200);
        const [replica] = await cloud.query<{ owner: string }>(`select tableowner as owner from pg_tables where schemaname = 'public' and tablename = 'items'`);
        expect(replica?.owner).toBe(ROLE);
      } finally {
        await cloud.query(`drop owned by ${ROLE}`);
      }
    } finally {
      await admin.query(`drop role if exists ${ROLE}`).catch(() => {});
      await admin.end();
    }
  });
});
