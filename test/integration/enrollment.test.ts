/**
 * Enrollment without the admin key, key revocation and deregistration, through the built binary
 * as an admin and an on-prem user run them.
 */
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { ROUTES, tablePath } from '../../src/shared/protocol.js';
import { createDatabase, startTestServer, type TestServer } from '../support/fixtures.js';
import { tidemark } from '../support/run-cli.js';

async function enrollToken(server: TestServer, args: string[] = []): Promise<{ token: string; uses: number; clientId: string; expiresAt: string }> {
  const r = await tidemark(['enroll-token', '--server', server.url, '--admin-key', server.adminKey, '--client', 'acme', ...args]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout);
}

async function accepted(server: TestServer, clientId: string, databaseId: string, key: string): Promise<boolean> {
  const res = await fetch(`${server.url}${tablePath(clientId, databaseId, { schema: 'public', name: 'nothing_here' })}`, {
    headers: { authorization: `Bearer ${key}`, 'x-tidemark-agent-id': 'probe' },
  });
  await res.arrayBuffer();
  return res.status !== 401;
}

// Each test starts tidemark processes one after the other: on a busy machine each start takes seconds.
describe('enrollment, revocation and deregistration', { timeout: 300_000 }, () => {
  it('registers with an enrollment token, writes the credentials into the agent config (0600), and the agent syncs with that file', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await local.query(`create table items (id int primary key, name text)`);
    await local.query(`insert into items select i, 'item ' || i from generate_series(1, 50) i`);
    const dir = mkdtempSync(join(tmpdir(), 'tidemark-enroll-'));
    const file = join(dir, 'agent.yaml');
    writeFileSync(file, `# Lyon plant\ndatabaseUrl: ${local.url}\n`, { mode: 0o644 });

    const token = await enrollToken(server, ['--expires', '7d']);
    expect(token).toMatchObject({ clientId: 'acme', uses: 1 });
    expect(Date.parse(token.expiresAt)).toBeGreaterThan(Date.now() + 6 * 86_400_000);

    const reg = await tidemark(['register', '--server', server.url, '--enroll-token', token.token, '--name', 'Lyon plant', '--config', file]);
    expect(reg.stderr).toBe('');
    expect(reg.code).toBe(0);
    const printed = JSON.parse(reg.stdout) as { clientId: string; databaseId: string; config: string };
    expect(printed).toMatchObject({ clientId: 'acme', config: file });
    expect(reg.stdout).not.toContain('tmk_');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const text = readFileSync(file, 'utf8');
    expect(text).toMatch(/^# Lyon plant\ndatabaseUrl: /);
    expect(text).toContain(`databaseId: ${printed.databaseId}`);
    expect(text).toMatch(/apiKey: tmk_/);

    expect((await tidemark(['track', '--config', file, 'public.items'])).code).toBe(0);
    const sync = await tidemark(['sync', '--once', '--config', file]);
    expect(sync.stderr).toBe('');
    expect(sync.code).toBe(0);
    const [row] = await server.db.query<{ n: number }>(`select count(*)::int as n from public.items where tidemark_database_id = $1::uuid`, [
      printed.databaseId,
    ]);
    expect(row?.n).toBe(50);

    // Single use: the same token again is refused, and says why.
    const again = await tidemark(['register', '--server', server.url, '--enroll-token', token.token, '--name', 'again']);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/enrollment token not accepted: unknown, expired or used up.*\[TM_AUTH_UNAUTHENTICATED\]/);
    // The token is stored hashed.
    const stored = await server.db.query<{ token_hash: Buffer }>(`select token_hash from tidemark.enrollment_token`);
    expect(stored).toHaveLength(1);
    expect(stored[0]?.token_hash.toString('latin1')).not.toContain(token.token.slice(4, 20));
  });

  it('a token allows as many registrations as its uses, none after it expires; without --config the credentials are printed', async () => {
    await using server = await startTestServer();
    const token = await enrollToken(server, ['--expires', '12h', '--uses', '2']);
    for (const name of ['a', 'b']) {
      const r = await tidemark(['register', '--server', server.url, '--enroll-token', token.token, '--name', name]);
      expect(r.code).toBe(0);
      const out = JSON.parse(r.stdout) as { clientId: string; databaseId: string; apiKey: string };
      expect(out.clientId).toBe('acme');
      expect(await accepted(server, out.clientId, out.databaseId, out.apiKey)).toBe(true);
    }
    const third = await tidemark(['register', '--server', server.url, '--enroll-token', token.token, '--name', 'c']);
    expect(third.code).toBe(1);

    const expiring = await enrollToken(server, ['--expires', '1h']);
    await server.db.query(`update tidemark.enrollment_token set expires_at = now() - interval '1 second' where uses_left = 1`);
    const late = await tidemark(['register', '--server', server.url, '--enroll-token', expiring.token, '--name', 'late'], {
      TIDEMARK_SERVER_URL: server.url,
    });
    expect(late.code).toBe(1);
    expect(late.stderr).toMatch(/not accepted/);
    const [row] = await server.db.query<{ n: number }>(`select count(*)::int as n from tidemark.tenant_database`);
    expect(row?.n).toBe(2);

    const bad = await tidemark(['enroll-token', '--server', server.url, '--admin-key', server.adminKey, '--client', 'acme', '--expires', 'soon']);
    expect(bad.code).toBe(78);
    expect(bad.stderr).toMatch(/invalid --expires "soon"/);
  });

  it('counts wrong enrollment tokens as failed authentications: the address is throttled', async () => {
    await using server = await startTestServer({ authFailureLimit: 3 });
    const token = await enrollToken(server);
    const enroll = (t: string) =>
      fetch(`${server.url}${ROUTES.enroll}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${t}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'x' }),
      }).then(async (r) => ({ status: r.status, body: await r.text() }));
    for (let i = 0; i < 3; i++) expect((await enroll(`tme_guess${i}`)).status).toBe(401);
    const throttled = await enroll(token.token);
    expect(throttled.status).toBe(429);
    const [row] = await server.db.query<{ n: number }>(`select count(*)::int as n from tidemark.tenant_database`);
    expect(row?.n).toBe(0);
  });

  it('revokes a database key at once, and deregisters a database with its replica rows only after --yes', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await local.query(`create table items (id int primary key, name text)`);
    await local.query(`insert into items select i, 'item ' || i from generate_series(1, 20) i`);
    const a = await server.register('acme');
    const b = await server.register('beta');
    const env = (reg: { clientId: string; databaseId: string; apiKey: string }) => ({
      TIDEMARK_DATABASE_URL: local.url,
      TIDEMARK_SERVER_URL: server.url,
      TIDEMARK_CLIENT_ID: reg.clientId,
      TIDEMARK_DATABASE_ID: reg.databaseId,
      TIDEMARK_API_KEY: reg.apiKey,
    });
    expect((await tidemark(['track', 'public.items'], env(a))).code).toBe(0);
    expect((await tidemark(['sync', '--once'], env(a))).code).toBe(0);
    expect((await tidemark(['sync', '--once'], env(b))).code).toBe(0);
    const admin = ['--server', server.url, '--admin-key', server.adminKey];

    const revoked = await tidemark(['revoke-key', ...admin, '--client', 'acme', '--database-id', a.databaseId]);
    expect(revoked.code).toBe(0);
    const out = JSON.parse(revoked.stdout) as { apiKey: string; keysRevoked: number };
    expect(out.keysRevoked).toBe(1);
    expect(await accepted(server, 'acme', a.databaseId, a.apiKey)).toBe(false);
    expect(await accepted(server, 'acme', a.databaseId, out.apiKey)).toBe(true);

    const unconfirmed = await tidemark(['deregister', ...admin, '--client', 'acme', '--database-id', a.databaseId]);
    expect(unconfirmed.code).toBe(2);
    expect(unconfirmed.stderr).toMatch(/--yes to confirm/);
    const count = async (db: string) =>
      (await server.db.query<{ n: number }>(`select count(*)::int as n from public.items where tidemark_database_id = $1::uuid`, [db]))[0]?.n;
    expect(await count(a.databaseId)).toBe(20);

    const gone = await tidemark(['deregister', ...admin, '--client', 'acme', '--database-id', a.databaseId, '--yes']);
    expect(gone.stderr).toBe('');
    expect(JSON.parse(gone.stdout)).toEqual({ clientId: 'acme', databaseId: a.databaseId, tables: ['public.items'], rowsDeleted: 20 });
    expect(await count(a.databaseId)).toBe(0);
    expect(await count(b.databaseId)).toBe(20);
    const left = await server.db.query<{ t: string; n: number }>(
      `select 'tenant' as t, count(*)::int as n from tidemark.tenant_database where database_id = $1::uuid
       union all select 'state', count(*)::int from tidemark.table_state where database_id = $1::uuid
       union all select 'keys', count(*)::int from tidemark.database_key where database_id = $1::uuid`,
      [a.databaseId],
    );
    expect(left.map((r) => r.n)).toEqual([0, 0, 0]);
    expect(await accepted(server, 'acme', a.databaseId, out.apiKey)).toBe(false);
    const twice = await tidemark(['deregister', ...admin, '--client', 'acme', '--database-id', a.databaseId, '--yes']);
    expect(twice.code).toBe(1);
    expect(twice.stderr).toMatch(/TM_NOT_FOUND/);
  });
});
