/**
 * The CLI contract acceptance checks rely on, run as a user runs it: `node dist/cli/main.js ...`
 * (npm test builds dist first) against a real server and real databases.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { freePort } from '../../src/cli/free-port.js';
import { createDatabase, dumpRows, startTestServer } from '../support/fixtures.js';

const BIN = join(import.meta.dirname, '../../dist/cli/main.js');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function tidemark(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: { PATH: process.env.PATH ?? '', ...env } }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

const COMMANDS = [
  'server',
  'register',
  'track',
  'untrack',
  'sync',
  'agent',
  'status',
  'verify',
  'resync',
  'config check',
  'demo',
  'start',
  'enroll-token',
  'rotate-key',
  'revoke-key',
  'deregister',
];

// Each test starts tidemark processes one after the other: on a busy machine each start takes seconds.
describe('tidemark CLI', { timeout: 300_000 }, () => {
  it('has --help on every command', async () => {
    const top = await tidemark(['--help']);
    expect(top.code).toBe(0);
    for (const c of COMMANDS) expect(top.stdout).toContain(c.split(' ')[0]);
    for (const c of COMMANDS) {
      const r = await tidemark([...c.split(' '), '--help']);
      expect(r.code, c).toBe(0);
      expect(r.stdout, c).toMatch(/^Usage: tidemark /);
    }
  });

  it('fails with one line and a non-zero exit on bad usage and bad config', async () => {
    const unknown = await tidemark(['sync', '--once', '--bogus']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr.trim().split('\n')).toHaveLength(1);
    const missing = await tidemark(['sync', '--once']);
    expect(missing.code).toBe(78);
    expect(missing.stderr.trim().split('\n')).toHaveLength(1);
    expect(missing.stderr).toMatch(/databaseUrl is required \(--database or TIDEMARK_DATABASE_URL\)/);
  });

  it('registers, tracks, syncs once, reports status; all from flags, a YAML file or TIDEMARK_* env', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    // Hostile names: a schema with a quote and an accent, a table with a dot, mixed-case columns.
    await local.query(`create schema "Wé""ird"`);
    await local.query(`create table "Wé""ird"."a.b" ("Id" int, "Name" text, "näme 2" text, primary key ("Id"))`);
    await local.query(`insert into "Wé""ird"."a.b" select i, 'n' || i, e'tab\\t' || i from generate_series(1, 50) i`);
    await local.query(`create table plain (id bigint primary key, v jsonb)`);
    await local.query(`insert into plain select i, jsonb_build_object('i', i) from generate_series(1, 20) i`);
    await local.query(`create table nokey (v int)`);

    const reg = await tidemark(['register', '--server', server.url, '--admin-key', server.adminKey, '--client', 'acme', '--name', 'site 1']);
    expect(reg.code, reg.stderr).toBe(0);
    const creds = JSON.parse(reg.stdout) as { clientId: string; databaseId: string; apiKey: string };
    expect(Object.keys(creds)).toEqual(['clientId', 'databaseId', 'apiKey']);
    expect(reg.stdout.trim().split('\n')).toHaveLength(1);

    const noKey = await tidemark(['track', '--database', local.url, 'nokey']);
    expect(noKey.code).toBe(1);
    expect(noKey.stderr).toMatch(/table public\.nokey has no primary key/);
    expect(noKey.stderr.trim().split('\n')).toHaveLength(1);
    const absent = await tidemark(['track', '--database', local.url, 'nosuch']);
    expect(absent.stderr).toMatch(/table nosuch does not exist/);

    const track = await tidemark(['track', '--database', local.url, '"Wé""ird"."a.b"', 'public.plain']);
    expect(track.code, track.stderr).toBe(0);
    // Idempotent.
    expect((await tidemark(['track', '--database', local.url, 'plain'])).code).toBe(0);

    const flags = ['--database', local.url, '--server', server.url, '--client', creds.clientId, '--database-id', creds.databaseId, '--api-key', creds.apiKey];
    const sync = await tidemark(['sync', '--once', ...flags]);
    expect(sync.code, sync.stderr).toBe(0);
    expect(sync.stdout).toMatch(/"Wé""ird"\."a\.b": converged; uploaded 50/);
    expect(await dumpRows(server.db, '"Wé""ird"."a.b"')).toEqual(await dumpRows(local, '"Wé""ird"."a.b"'));

    // The same through a YAML file with the key as an env reference, and through TIDEMARK_* env alone.
    const file = join(tmpdir(), `tidemark-${creds.databaseId}.yaml`);
    writeFileSync(
      file,
      [
        `databaseUrl: ${local.url}`,
        `serverUrl: ${server.url}`,
        `clientId: ${creds.clientId}`,
        `databaseId: ${creds.databaseId}`,
        'apiKey: { env: TIDEMARK_KEY_FOR_TEST }',
        'tables: [public.plain]',
      ].join('\n'),
    );
    await local.query(`update plain set v = '{"changed": true}' where id = 3`);
    const fromFile = await tidemark(['sync', '--once', '--config', file, '--json'], { TIDEMARK_KEY_FOR_TEST: creds.apiKey });
    expect(fromFile.code, fromFile.stderr).toBe(0);
    const parsed = JSON.parse(fromFile.stdout) as { tables: { table: string; rowsUploaded: number }[] };
    expect(parsed.tables).toEqual([expect.objectContaining({ table: 'public.plain', rowsUploaded: 1 })]);

    const env = {
      TIDEMARK_DATABASE_URL: local.url,
      TIDEMARK_SERVER_URL: server.url,
      TIDEMARK_CLIENT_ID: creds.clientId,
      TIDEMARK_DATABASE_ID: creds.databaseId,
      TIDEMARK_API_KEY: creds.apiKey,
    };
    const status = await tidemark(['status', '--json'], env);
    expect(status.code, status.stderr).toBe(0);
    const rows = JSON.parse(status.stdout) as { table: string; local: { rowCount: number }; remote: { rowCount: number } }[];
    expect(rows.map((r) => [r.table, r.local.rowCount, r.remote.rowCount])).toEqual([
      ['"Wé""ird"."a.b"', 50, 50],
      ['public.plain', 20, 20],
    ]);
    const table = await tidemark(['status'], env);
    expect(table.stdout).toMatch(/public\.plain\s+20\s+20\s+.*in sync/);

    // verify: identical, then a remote edit behind tidemark's back is found (exit 1 on --dry-run) and repaired.
    expect((await tidemark(['verify', '--dry-run'], env)).code).toBe(0);
    await server.db.query(`update plain set v = '{"tampered": 1}' where id = 7`);
    const dry = await tidemark(['verify', '--dry-run', '--tables', 'public.plain'], env);
    expect(dry.code).toBe(1);
    expect(dry.stdout).toMatch(/public\.plain: 1 rows differ/);
    expect(dry.stdout).toContain('~ ["7"]');
    expect((await tidemark(['verify', '--tables', 'public.plain'], env)).code).toBe(0);
    expect(await dumpRows(server.db, 'public.plain')).toEqual(await dumpRows(local, 'public.plain'));

    // resync through the admin CLI shows in status.
    const resync = await tidemark([
      'resync',
      '--server',
      server.url,
      '--admin-key',
      server.adminKey,
      '--client',
      'acme',
      '--database-id',
      creds.databaseId,
      '--tables',
      'public.plain',
    ]);
    expect(resync.code, resync.stderr).toBe(0);
    expect((await tidemark(['status'], env)).stdout).toMatch(/public\.plain .* requested/);
    expect((await tidemark(['sync', '--once'], env)).code).toBe(0);
    expect((await tidemark(['status'], env)).stdout).toMatch(/public\.plain .* done .*\(0 repaired\)/);
  });

  it('takes register, resync and track settings from a YAML file too', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await local.query(`create table t (id int primary key)`);
    const file = join(tmpdir(), `tidemark-admin-${Date.now()}.yaml`);
    writeFileSync(file, [`serverUrl: ${server.url}`, 'adminKey: { env: TIDEMARK_ADMIN_KEY }', `databaseUrl: ${local.url}`].join('\n'));
    const reg = await tidemark(['register', '--config', file, '--client', 'acme', '--name', 'from file'], { TIDEMARK_ADMIN_KEY: server.adminKey });
    expect(reg.code, reg.stderr).toBe(0);
    expect((await tidemark(['track', '--config', file, 't'])).code).toBe(0);
    const noKey = await tidemark(['register', '--config', file, '--client', 'acme', '--name', 'x']);
    expect(noKey.code).toBe(78);
    expect(noKey.stderr).toMatch(/TIDEMARK_ADMIN_KEY is not set/);
    const noServer = await tidemark(['resync', '--client', 'acme', '--database-id', JSON.parse(reg.stdout).databaseId]);
    expect(noServer.code).toBe(78);
    expect(noServer.stderr).toMatch(/serverUrl is required \(--server or TIDEMARK_SERVER_URL\)/);
  });

  it('exits non-zero when the server is unreachable, with one line', async () => {
    await using local = await createDatabase('local');
    await local.query(`create table t (id int primary key)`);
    expect((await tidemark(['track', '--database', local.url, 't'])).code).toBe(0);
    const r = await tidemark([
      'sync',
      '--once',
      '--database',
      local.url,
      '--server',
      `http://127.0.0.1:${await freePort()}`,
      '--client',
      'acme',
      '--database-id',
      '00000000-0000-4000-8000-000000000000',
      '--api-key',
      'k',
    ]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/public\.t: NOT converged: server unreachable at .*ECONNREFUSED/);
    expect(r.stderr.trim().split('\n')).toEqual(['tidemark: 1 table(s) did not converge']);
  });
});
