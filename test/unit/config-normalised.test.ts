import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';
import { z } from 'zod';

import { loadAdminConfig, loadTrackConfig } from '../../src/shared/config/admin-config.js';
import { agentConfigSchema, loadAgentConfig } from '../../src/shared/config/agent-config.js';
import { redactConfig, secretString, shapeOf } from '../../src/shared/config/redact.js';
import { connectionFromPgEnv, parseConninfo, redactConnectionString, toConnectionUrl } from '../../src/shared/connection-string.js';
import { ConfigError } from '../../src/shared/errors.js';
import { REQUIRED, tempYaml } from '../support/config-fixtures.js';

function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('strict configuration files', () => {
  it('refuses a misspelled key, naming it and the closest valid key, at any depth', () => {
    const file = tempYaml('concurency: 8\nbatch:\n  maxRow: 5\nverificaton:\n  periodHours: 1\n');
    const message = messageOf(() => loadAgentConfig({ file, env: {}, flags: REQUIRED }));
    expect(message).toMatch(/concurency: unknown key \(did you mean concurrency\?\)/);
    expect(message).toMatch(/batch\.maxRow: unknown key \(did you mean batch\.maxRows\?\)/);
    expect(message).toMatch(/verificaton: unknown key \(did you mean verification\?\)/);
  });

  it('names an unknown key with nothing close plainly', () => {
    expect(messageOf(() => loadAgentConfig({ file: tempYaml('colour: blue\n'), env: {}, flags: REQUIRED }))).toMatch(/colour: unknown key(;|$)/);
  });

  it('accepts keys of another command in a shared file, and refuses typos in every command', () => {
    const shared = tempYaml('serverUrl: http://127.0.0.1:1\nadminKey: an-admin-key-of-16+\ndatabaseUrl: postgres://u@h/db\nclientId: acme\n');
    expect(loadAdminConfig({ file: shared, env: {}, flags: {} }).adminKey).toBe('an-admin-key-of-16+');
    expect(loadTrackConfig({ file: shared, env: {}, flags: {} }).databaseUrl).toBe('postgres://u@h/db');
    expect(loadAgentConfig({ file: shared, env: {}, flags: { ...REQUIRED, serverUrl: undefined } }).serverUrl).toBe('http://127.0.0.1:1');
    const typo = tempYaml('serverUrl: http://127.0.0.1:1\nadminkey: x\n');
    expect(messageOf(() => loadAdminConfig({ file: typo, env: {}, flags: {} }))).toMatch(/adminkey: unknown key \(did you mean adminKey\?\)/);
    expect(messageOf(() => loadTrackConfig({ file: tempYaml('databaseURL: x\n'), env: {}, flags: { databaseUrl: 'postgres://h/db' } }))).toMatch(
      /databaseURL: unknown key \(did you mean databaseUrl\?\)/,
    );
  });
});

describe('normalised configuration', () => {
  it('validates the schedule as the agent will run it', () => {
    expect(messageOf(() => loadAgentConfig({ env: {}, flags: { ...REQUIRED, schedule: 'every minute' } }))).toMatch(
      /schedule: "every minute" is not a cron expression/,
    );
    expect(loadAgentConfig({ env: {}, flags: { ...REQUIRED, schedule: '*/10 * * * * *' } }).schedule).toBe('*/10 * * * * *');
  });

  it('lower-cases ids, so one database has one id everywhere', () => {
    const c = loadAgentConfig({ env: {}, flags: { ...REQUIRED, clientId: 'ACME', databaseId: '6F1C1F3E-8D3B-4F6E-9A43-2B7D1C0E5A10' } });
    expect(c.clientId).toBe('acme');
    expect(c.databaseId).toBe('6f1c1f3e-8d3b-4f6e-9a43-2b7d1c0e5a10');
  });

  it('checks table names and metrics addresses where the commands would', () => {
    expect(loadAgentConfig({ env: {}, flags: { ...REQUIRED, tables: ['Items', '"Wé""ird"."a.b"'] } }).tables).toEqual(['public.items', '"Wé""ird"."a.b"']);
    const message = messageOf(() => loadAgentConfig({ env: {}, flags: { ...REQUIRED, tables: ['a.b.c'], metricsListen: 'localhost' } }));
    expect(message).toMatch(/tables\.0: invalid table name/);
    expect(message).toMatch(/metricsListen: invalid listen address/);
    expect(loadAgentConfig({ env: {}, flags: { ...REQUIRED, metricsListen: '' } }).metricsListen).toBe('');
  });

  it('redacts what the schema marks secret, whatever the key is called', () => {
    const c = loadAgentConfig({ env: {}, flags: { ...REQUIRED, databaseUrl: 'host=db user=erp password=s3cret dbname=erp', apiKey: 'tmk_secret' } });
    const shown = JSON.stringify(redactConfig(agentConfigSchema, c));
    expect(shown).not.toContain('s3cret');
    expect(shown).not.toContain('tmk_secret');
    expect(shown).toContain('"apiKey":"***"');
    expect(shown).toContain('erp');
    const custom = z.object({ nested: z.object({ token: secretString().optional(), password: z.string() }) });
    expect(redactConfig(custom, { nested: { token: 't0k', password: 'not marked' } })).toEqual({ nested: { token: '***', password: 'not marked' } });
  });
});

describe('database connection strings as psql takes them', () => {
  it('turns the keyword/value form into the equivalent URL', () => {
    expect(toConnectionUrl('host=localhost dbname=erp')).toBe('postgresql://localhost/erp');
    expect(toConnectionUrl("host = db.example.com port=6432 user=erp password='it\\'s secret' dbname=erp sslmode=require")).toBe(
      `postgresql://erp:${encodeURIComponent("it's secret")}@db.example.com:6432/erp?sslmode=require`,
    );
    expect(toConnectionUrl('host=/var/run/postgresql dbname=erp')).toBe('postgresql:///erp?host=%2Fvar%2Frun%2Fpostgresql');
    expect(toConnectionUrl('postgres://u@h/db')).toBe('postgres://u@h/db');
    expect(parseConninfo("a=1 b='x y'")).toEqual(
      new Map([
        ['a', '1'],
        ['b', 'x y'],
      ]),
    );
    expect(() => parseConninfo('host')).toThrow(/missing "="/);
    expect(() => parseConninfo("host='open")).toThrow(/unterminated/);
  });

  it('redacts the password in either form', () => {
    expect(redactConnectionString('postgres://u:pw@h/db')).toBe('postgres://u:***@h/db');
    expect(redactConnectionString('host=h user=u password=pw dbname=db')).toBe('postgresql://u:***@h/db');
  });

  it('takes the database from PG* variables when none is given', () => {
    expect(connectionFromPgEnv({})).toBeUndefined();
    expect(connectionFromPgEnv({ PGHOST: 'localhost', PGDATABASE: 'erp', PGPORT: '5433', PGUSER: 'erp', PGPASSWORD: 'x' })).toBe(
      'postgresql://erp@localhost:5433/erp',
    );
    const c = loadTrackConfig({ env: { PGHOST: 'localhost', PGDATABASE: 'erp' }, flags: {} });
    expect(c.databaseUrl).toBe('postgresql://localhost/erp');
    // An explicit database beats PG*, as for psql.
    expect(loadTrackConfig({ env: { PGHOST: 'localhost', TIDEMARK_DATABASE_URL: 'dbname=other' }, flags: {} }).databaseUrl).toBe('dbname=other');
  });
});

describe('the README configuration table', () => {
  /** Leaf key paths of a config schema: `concurrency`, `batch.maxRows` … */
  function leafPaths(schema: z.core.$ZodType, prefix = ''): string[] {
    return Object.entries(shapeOf(schema) ?? {}).flatMap(([k, sub]) => (shapeOf(sub) ? leafPaths(sub, `${prefix}${k}.`) : [`${prefix}${k}`]));
  }

  /** Keys in the first column of the agent key table; `batch.minRows` / `maxRows` means batch.maxRows too. */
  function readmeAgentKeys(): string[] {
    const readme = readFileSync(join(import.meta.dirname, '../../README.md'), 'utf8');
    const table = readme.slice(readme.indexOf('| agent key |')).split('\n\n')[0] ?? '';
    return table
      .split('\n')
      .slice(2)
      .flatMap((row) => {
        let parent = '';
        return [...(row.split('|')[1] ?? '').matchAll(/`([A-Za-z.]+)`/g)].map((m) => {
          const key = m[1] as string;
          if (key.includes('.')) parent = key.slice(0, key.lastIndexOf('.') + 1);
          return key.includes('.') ? key : `${parent}${key}`;
        });
      });
  }

  it('lists every agent key, and no other', () => {
    expect(readmeAgentKeys().sort()).toEqual(leafPaths(agentConfigSchema).sort());
  });
});
