/**
 * `tidemark fleet` and `tidemark status`'s exit codes and --json, through the built binary against a
 * real server and real databases (the agent runs in process, as a deployed one would report).
 */
import { describe, expect, it } from 'vitest';

import { freePort } from '../../src/cli/free-port.js';
import { fleetDetailSchema, fleetListSchema } from '../../src/shared/protocol.js';
import { createDatabase, startTestAgent, startTestServer } from '../support/fixtures.js';
import { tidemark } from '../support/run-cli.js';

interface StatusJson {
  table: string;
  state: 'in_sync' | 'behind' | 'quarantined' | 'error';
  error: string | null;
}

describe('tidemark fleet and status', { timeout: 300_000 }, () => {
  it('fleet prints every database worst first, as a table or JSON, and one database in detail', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await local.query(`create table items (id int primary key)`);
    await local.query(`insert into items select generate_series(1, 30)`);
    const lyon = await server.register('acme', 'Lyon');
    const rome = await server.register('globex', 'Rome');
    await using agent = await startTestAgent(local, server, lyon);
    await agent.local.tracking.track('items');
    expect((await agent.agent.tick()).converged).toBe(true);
    const admin = ['--server', server.url, '--admin-key', server.adminKey];

    const help = await tidemark(['fleet', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: tidemark fleet/);
    const table = await tidemark(['fleet', ...admin]);
    expect(table.code, table.stderr).toBe(0);
    const lines = table.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^STATE\s+CLIENT\s+NAME\s+DATABASE ID\s+LAST REPORT/);
    expect(lines[1]).toMatch(new RegExp(`^never\\s+globex\\s+Rome\\s+${rome.databaseId}\\s+never`));
    expect(lines[2]).toMatch(new RegExp(`^ok\\s+acme\\s+Lyon\\s+${lyon.databaseId}\\s+\\d+s ago`));
    expect(lines).toHaveLength(3);

    const json = await tidemark(['fleet', ...admin, '--json', '--client', 'acme']);
    expect(json.code, json.stderr).toBe(0);
    expect(fleetListSchema.parse(JSON.parse(json.stdout)).databases).toEqual([
      expect.objectContaining({ clientId: 'acme', name: 'Lyon', state: 'ok', tables: 1, agentVersion: '0.1.0' }),
    ]);
    const never = await tidemark(['fleet', ...admin, '--json', '--state', 'never']);
    expect(fleetListSchema.parse(JSON.parse(never.stdout)).databases.map((d) => d.name)).toEqual(['Rome']);

    const detail = await tidemark(['fleet', ...admin, '--client', 'acme', '--database-id', lyon.databaseId]);
    expect(detail.code, detail.stderr).toBe(0);
    expect(detail.stdout).toMatch(/public\.items\s+ok\s+30\s+30/);
    expect(detail.stdout).toMatch(/RUN AT\s+DURATION\s+OUTCOME/);
    const detailJson = await tidemark(['fleet', ...admin, '--client', 'acme', '--database-id', lyon.databaseId, '--json']);
    expect(fleetDetailSchema.parse(JSON.parse(detailJson.stdout)).tables.map((t) => t.table)).toEqual(['public.items']);

    const badState = await tidemark(['fleet', ...admin, '--state', 'sleepy']);
    expect(badState.code).toBe(2);
    const wrongKey = await tidemark(['fleet', '--server', server.url, '--admin-key', 'not-the-admin-key-0000']);
    expect(wrongKey.code).toBe(1);
    expect(wrongKey.stderr).toMatch(/admin key not accepted/);
    const down = await tidemark(['fleet', '--server', `http://127.0.0.1:${await freePort()}`, '--admin-key', server.adminKey]);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/server unreachable/);
  });

  it('status exits 0 only when every table is in sync: 1 when behind, quarantined, or the server is down or refuses the key', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await local.query(`create table items (id int primary key)`);
    await local.query(`insert into items select generate_series(1, 10)`);
    const reg = await server.register('acme');
    await using agent = await startTestAgent(local, server, reg);
    await agent.local.tracking.track('items');
    await agent.agent.tick();
    const env = {
      TIDEMARK_DATABASE_URL: local.url,
      TIDEMARK_SERVER_URL: server.url,
      TIDEMARK_CLIENT_ID: reg.clientId,
      TIDEMARK_DATABASE_ID: reg.databaseId,
      TIDEMARK_API_KEY: reg.apiKey,
    };
    const status = async (extra: Record<string, string> = {}) => {
      const r = await tidemark(['status', '--json'], { ...env, ...extra });
      return { code: r.code, stderr: r.stderr, rows: JSON.parse(r.stdout) as StatusJson[] };
    };

    const ok = await status();
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.rows).toEqual([expect.objectContaining({ table: 'public.items', state: 'in_sync', error: null })]);

    // A local change not yet synced: behind.
    await local.query(`insert into items values (11)`);
    const behind = await status();
    expect(behind.code).toBe(1);
    expect(behind.rows[0]?.state).toBe('behind');
    expect(behind.stderr).toMatch(/1 of 1 table\(s\) not in sync \(1 behind\)/);
    const text = await tidemark(['status'], env);
    expect(text.code).toBe(1);
    expect(text.stdout).toMatch(/public\.items\s+11\s+10\s+.*behind/);

    // A row the replica refuses: quarantined.
    await server.db.query(`alter table public.items add constraint no_12 check (id <> 12)`);
    await local.query(`insert into items values (12)`);
    await agent.agent.tick();
    const quarantined = await status();
    expect(quarantined.code).toBe(1);
    expect(quarantined.rows[0]?.state).toBe('quarantined');

    // The key is refused, or the server is down: error, exit 1.
    const refused = await status({ TIDEMARK_API_KEY: 'tmk_not-a-key' });
    expect(refused.code).toBe(1);
    expect(refused.rows[0]).toMatchObject({ state: 'error', error: expect.stringMatching(/TM_AUTH_UNAUTHENTICATED/) });
    const down = await status({ TIDEMARK_SERVER_URL: `http://127.0.0.1:${await freePort()}` });
    expect(down.code).toBe(1);
    expect(down.rows[0]).toMatchObject({ state: 'error', error: expect.stringMatching(/TM_SERVER_UNAVAILABLE/) });
  });
});
