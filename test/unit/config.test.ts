import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

import { loadAgentConfig } from '../../src/shared/config/agent-config.js';
import { parseListen } from '../../src/shared/config/load-config.js';
import { loadServerConfig } from '../../src/shared/config/server-config.js';
import { ConfigError } from '../../src/shared/errors.js';
import { REQUIRED, tempYaml } from '../support/config-fixtures.js';

const CONFIG_DIR = join(import.meta.dirname, '../../config');

describe('configuration', () => {
  it('parses every file in config/', () => {
    const files = readdirSync(CONFIG_DIR).filter((f) => /\.ya?ml$/.test(f));
    expect(files).toEqual(expect.arrayContaining(['agent.example.yaml', 'server.example.yaml']));
    for (const f of files) expect(() => parse(readFileSync(join(CONFIG_DIR, f), 'utf8')), f).not.toThrow();
    const env = { TIDEMARK_DATABASE_URL: 'postgres://u:secret@h/db', TIDEMARK_API_KEY: 'key', TIDEMARK_ADMIN_KEY: 'an-admin-key-of-16+' };
    const agent = loadAgentConfig({ file: join(CONFIG_DIR, 'agent.example.yaml'), env, flags: {} });
    expect(agent.apiKey).toBe('key');
    expect(agent.batch.maxBytes).toBe(8 * 1024 * 1024);
    const server = loadServerConfig({ file: join(CONFIG_DIR, 'server.example.yaml'), env, flags: {} });
    expect(server.adminKey).toBe('an-admin-key-of-16+');
  });

  it('applies defaults < file < TIDEMARK_* env < flags', () => {
    const file = tempYaml('schedule: "*/5 * * * *"\nconcurrency: 2\nbatch:\n  targetSeconds: 5\n');
    const c = loadAgentConfig({ file, env: { TIDEMARK_CONCURRENCY: '3', TIDEMARK_SCHEDULE: '0 * * * *' }, flags: { ...REQUIRED, schedule: '*/2 * * * *' } });
    expect(c.schedule).toBe('*/2 * * * *'); // flag beats env and file
    expect(c.concurrency).toBe(3); // env beats file
    expect(c.batch.targetSeconds).toBe(5); // file beats default
    expect(c.batch.maxRows).toBe(200_000); // default
    expect(Object.isFrozen(c.batch)).toBe(true);
  });

  it('lists every bad key in one error, naming where to set missing ones', () => {
    const attempt = () => loadAgentConfig({ env: {}, flags: { serverUrl: 'not a url', clientId: 'Bad Id', concurrency: '0' } });
    expect(attempt).toThrow(ConfigError);
    const message = (() => {
      try {
        attempt();
      } catch (e) {
        return (e as Error).message;
      }
      return '';
    })();
    expect(message).toMatch(/databaseUrl is required \(--database or TIDEMARK_DATABASE_URL\)/);
    expect(message).toMatch(/serverUrl:/);
    expect(message).toMatch(/clientId:/);
    expect(message).toMatch(/concurrency:/);
  });

  it('resolves { env: TIDEMARK_* } references only', () => {
    const ok = tempYaml('apiKey: { env: TIDEMARK_SECRET }\n');
    expect(loadAgentConfig({ file: ok, env: { TIDEMARK_SECRET: 's3cret' }, flags: { ...REQUIRED, apiKey: undefined } }).apiKey).toBe('s3cret');
    const other = tempYaml('apiKey: { env: HOME }\n');
    expect(() => loadAgentConfig({ file: other, env: { HOME: '/root' }, flags: { ...REQUIRED, apiKey: undefined } })).toThrow(/only TIDEMARK_\* variables/);
    expect(() => loadAgentConfig({ file: ok, env: {}, flags: { ...REQUIRED, apiKey: undefined } })).toThrow(/TIDEMARK_SECRET is not set/);
  });

  it('reports unreadable and malformed files plainly', () => {
    expect(() => loadAgentConfig({ file: '/nonexistent/tidemark.yaml', env: {}, flags: REQUIRED })).toThrow(/cannot read config file .*ENOENT/);
    expect(() => loadAgentConfig({ file: tempYaml('a: [1,\n'), env: {}, flags: REQUIRED })).toThrow(/not valid YAML/);
    expect(() => loadAgentConfig({ file: tempYaml('- 1\n- 2\n'), env: {}, flags: REQUIRED })).toThrow(/must hold a mapping/);
  });

  it('parses listen addresses', () => {
    expect(parseListen('127.0.0.1:8080')).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(parseListen('[::1]:0')).toEqual({ host: '::1', port: 0 });
    expect(parseListen(':9465')).toEqual({ host: '0.0.0.0', port: 9465 });
    expect(() => parseListen('localhost')).toThrow(ConfigError);
    expect(() => parseListen('h:70000')).toThrow(ConfigError);
  });
});
