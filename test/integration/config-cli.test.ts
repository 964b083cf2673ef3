/**
 * Configuration as a user meets it, through the built binary (`node dist/cli/main.js`): strict
 * files in every command, `config check` validating what the commands validate, libpq connection
 * strings and PG* variables, and a wrong admin key named as such.
 */
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { createDatabase, startTestServer } from '../support/fixtures.js';
import { tidemark } from '../support/run-cli.js';

function yamlFile(lines: string[]): string {
  const file = join(tmpdir(), `tidemark-config-${process.pid}-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}

const AGENT_LINES = [
  'databaseUrl: postgres://erp:s3cret@127.0.0.1:1/erp',
  'serverUrl: http://127.0.0.1:1',
  'clientId: ACME',
  'databaseId: 6F1C1F3E-8D3B-4F6E-9A43-2B7D1C0E5A10',
  'apiKey: { env: TIDEMARK_API_KEY }',
];

describe('configuration through the CLI', () => {
  it('refuses a misspelled key in config check and in every command, naming the closest valid key', async () => {
    const file = yamlFile([...AGENT_LINES, 'concurency: 8']);
    const env = { TIDEMARK_API_KEY: 'k' };
    for (const args of [['config', 'check'], ['sync', '--once'], ['status'], ['track', 'public.t'], ['register', '--client', 'acme', '--name', 'x']]) {
      const r = await tidemark([...args, '--config', file], env);
      expect(r.code, args.join(' ')).toBe(78);
      expect(r.stderr, args.join(' ')).toMatch(/concurency: unknown key \(did you mean concurrency\?\)/);
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
    }
  });

  it('config check refuses the schedule the agent would refuse, and prints the rest normalised and redacted', async () => {
    const bad = await tidemark(['config', 'check', '--config', yamlFile([...AGENT_LINES, 'schedule: every minute'])], { TIDEMARK_API_KEY: 'k' });
    expect(bad.code).toBe(78);
    expect(bad.stderr).toMatch(/schedule: "every minute" is not a cron expression/);
    const ok = await tidemark(['config', 'check', '--config', yamlFile(AGENT_LINES)], { TIDEMARK_API_KEY: 'tmk_k3y' });
    expect(ok.code).toBe(0);
    const printed = JSON.parse(ok.stdout) as Record<string, unknown>;
    expect(printed).toMatchObject({ clientId: 'acme', databaseId: '6f1c1f3e-8d3b-4f6e-9a43-2b7d1c0e5a10', apiKey: '***' });
    expect(ok.stdout).not.toContain('s3cret');
    expect(ok.stdout).not.toContain('tmk_k3y');
  });

  it('says a wrong admin key was not accepted', async () => {
    await using server = await startTestServer();
    const r = await tidemark(['register', '--server', server.url, '--admin-key', 'not-the-admin-key', '--client', 'acme', '--name', 'x']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/admin key not accepted/);
    expect(r.stderr).toMatch(/TM_AUTH_UNAUTHENTICATED/);
  });

  it('connects with a keyword/value connection string and with PG* variables, as psql does', async () => {
    await using local = await createDatabase('local');
    await local.query('create table kv (id int primary key, v text)');
    const u = new URL(local.url);
    const user = decodeURIComponent(u.username);
    const password = decodeURIComponent(u.password);
    const conninfo = `host=${u.hostname} port=${u.port} dbname=${local.name} user=${user} password='${password.replaceAll("'", "\\'")}'`;
    const kv = await tidemark(['track', 'public.kv', '--database', conninfo]);
    expect(kv.stderr).toBe('');
    expect(kv.stdout).toMatch(/tracking public\.kv/);
    const pgEnv = { PGHOST: u.hostname, PGPORT: u.port, PGDATABASE: local.name, PGUSER: user, PGPASSWORD: password };
    const fromEnv = await tidemark(['track', 'public.kv'], pgEnv);
    expect(fromEnv.stderr).toBe('');
    expect(fromEnv.stdout).toMatch(/tracking public\.kv/);
    // A partial string takes the rest from PG*: dbname given, host and credentials from the environment.
    const partial = await tidemark(['track', 'public.kv', '--database', `dbname=${local.name}`], { ...pgEnv, PGDATABASE: 'postgres' });
    expect(partial.stderr).toBe('');
    // Refused credentials: the line says which database, and keeps the TM_* code.
    const refused = await tidemark(['track', 'public.kv', '--database', `dbname=${local.name} password=wrong`], pgEnv);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^tidemark: local database: .*password authentication failed.*\[TM_DB_AUTH_FAILED\]/);
  });
});
