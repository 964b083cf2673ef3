/**
 * Key rotation with an overlap window (src/cli/key-rotation.ts, src/server/key-store.ts): a crash
 * between any two steps leaves a key in the config file that the agent authenticates with. The
 * crashes are injected at the rotation's hooks; "authenticates" means a real agent run converges
 * with the key the file holds.
 */
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { describe, expect, it } from 'vitest';

import { Agent } from '../../src/agent/agent.js';
import { createAgentMetrics } from '../../src/agent/agent-metrics.js';
import { fileKeyProvider } from '../../src/agent/config-file.js';
import { httpRemoteFactory } from '../../src/agent/http-remote.js';
import { keyHolderFrom, rotateKey } from '../../src/cli/key-rotation.js';
import { loadAgentConfig } from '../../src/shared/config/agent-config.js';
import { silentLogger } from '../../src/shared/logger.js';
import type { RegisterResult } from '../../src/shared/protocol.js';
import { tablePath } from '../../src/shared/protocol.js';
import { createDatabase, startTestAgent, startTestServer, type TestDatabase, type TestServer } from '../support/fixtures.js';

class Crash extends Error {}
const crash = (): never => {
  throw new Crash('injected crash');
};

function configFile(server: TestServer, reg: RegisterResult): { dir: string; file: string } {
  const dir = mkdtempSync(join(tmpdir(), 'tidemark-rotate-'));
  const file = join(dir, 'agent.yaml');
  writeFileSync(
    file,
    `# the agent of the test site\nserverUrl: ${server.url}\nclientId: ${reg.clientId}\ndatabaseId: ${reg.databaseId}\napiKey: ${reg.apiKey}\n`,
    {
      mode: 0o644,
    },
  );
  return { dir, file };
}

/** Whether the server accepts `key` for the database (404 for the undeclared table means authenticated). */
async function accepted(server: TestServer, reg: RegisterResult, key: string): Promise<boolean> {
  const res = await fetch(`${server.url}${tablePath(reg.clientId, reg.databaseId, { schema: 'public', name: 'nothing_here' })}`, {
    headers: { authorization: `Bearer ${key}`, 'x-tidemark-agent-id': 'probe' },
  });
  await res.arrayBuffer();
  if (res.status === 401) return false;
  expect(res.status).toBe(404);
  return true;
}

let nextId = 100;
/** One agent run with the key the config file holds, after a new local row: it must converge. */
async function agentRunsWith(local: TestDatabase, server: TestServer, reg: RegisterResult, file: string): Promise<void> {
  await local.query(`insert into items values ($1::int, 'row')`, [nextId++]);
  await using agent = await startTestAgent(local, server, { ...reg, apiKey: keyHolderFrom(file).apiKey });
  const tick = await agent.agent.tick({ checkCount: true });
  expect(tick.tables[0]?.error).toBeUndefined();
  expect(tick.converged).toBe(true);
  const [{ n } = { n: -1 }] = await server.db.query<{ n: number }>(`select count(*)::int as n from public.items`);
  expect(n).toBe(nextId - 100 + 1);
}

describe('key rotation', () => {
  it('leaves a working key in the config file whatever step it dies at, and retires old keys after the overlap', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await local.query(`create table items (id int primary key, name text not null)`);
    await local.query(`insert into items values (99, 'first')`);
    const reg = await server.register('acme');
    const { dir, file } = configFile(server, reg);
    {
      await using agent = await startTestAgent(local, server, reg);
      await agent.local.tracking.track('items');
    }
    await agentRunsWith(local, server, reg, file);
    const k0 = reg.apiKey;

    // Dies after the server issued a key, before writing it: the file keeps the old key, which works.
    await expect(rotateKey(file, 0, { afterIssue: crash })).rejects.toBeInstanceOf(Crash);
    expect(keyHolderFrom(file).apiKey).toBe(k0);
    await agentRunsWith(local, server, reg, file);

    // Dies after writing the temporary file, before the rename: the file is untouched, no temporary file is left.
    await expect(rotateKey(file, 0, { beforeReplace: crash })).rejects.toBeInstanceOf(Crash);
    expect(keyHolderFrom(file).apiKey).toBe(k0);
    expect(readdirSync(dir)).toEqual(['agent.yaml']);
    await agentRunsWith(local, server, reg, file);

    // Dies after writing the new key, before confirming it: the new (pending) key works, and so does the old one.
    await expect(rotateKey(file, 0, { afterStore: crash })).rejects.toBeInstanceOf(Crash);
    const k1 = keyHolderFrom(file).apiKey;
    expect(k1).not.toBe(k0);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    await agentRunsWith(local, server, reg, file);
    expect(await accepted(server, reg, k0)).toBe(true);

    // The next rotation confirms the stored key first, then rotates: with no overlap, every older key stops now.
    const done = await rotateKey(file, 0);
    expect(done).toMatchObject({ clientId: reg.clientId, databaseId: reg.databaseId, config: file, keysRetiring: 1 });
    const k2 = keyHolderFrom(file).apiKey;
    expect(new Set([k0, k1, k2]).size).toBe(3);
    expect(await accepted(server, reg, k0)).toBe(false);
    expect(await accepted(server, reg, k1)).toBe(false);
    await agentRunsWith(local, server, reg, file);

    // With an overlap window, the previous key keeps working until it ends.
    const overlapped = await rotateKey(file, 3600);
    const k3 = keyHolderFrom(file).apiKey;
    expect(overlapped.keysRetiring).toBe(1);
    expect(Date.parse(overlapped.retireAt)).toBeGreaterThan(Date.now() + 3000 * 1000);
    expect(await accepted(server, reg, k2)).toBe(true);
    expect(await accepted(server, reg, k3)).toBe(true);
    await agentRunsWith(local, server, reg, file);
    // The file kept its other lines and comment, and is readable by its owner only.
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir)).toEqual(['agent.yaml']);
    expect(readFileSync(file, 'utf8')).toMatch(/^# the agent of the test site\nserverUrl: /);
    const [row] = await server.db.query<{ n: number }>(
      `select count(*)::int as n from tidemark.database_key where database_id = $1::uuid and (retire_at is null or retire_at > now())`,
      [reg.databaseId],
    );
    expect(row?.n).toBe(2);
  });

  it('a running agent follows a rotation of the key in its config file, even with no overlap', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await local.query(`create table items (id int primary key, name text not null)`);
    await local.query(`insert into items values (99, 'first')`);
    const reg = await server.register('acme');
    const { file } = configFile(server, reg);
    const config = loadAgentConfig({ file, env: {}, flags: { databaseUrl: local.url, logLevel: 'silent', verification: { periodHours: 0 } } });
    const pool = new pg.Pool({ connectionString: local.url, max: 4 });
    try {
      const agent = await Agent.create(
        config,
        pool,
        createAgentMetrics(),
        silentLogger,
        httpRemoteFactory(config, undefined, fileKeyProvider(file, config.apiKey)),
      );
      try {
        await agent.local.tracking.track('items');
        expect((await agent.tick({ checkCount: true })).converged).toBe(true);
        await rotateKey(file, 0);
        expect(await accepted(server, reg, reg.apiKey)).toBe(false);
        await local.query(`insert into items values (100, 'after the rotation')`);
        const tick = await agent.tick({ checkCount: true });
        expect(tick.tables[0]?.error).toBeUndefined();
        expect(tick.converged).toBe(true);
      } finally {
        await agent.stop();
      }
    } finally {
      await pool.end();
    }
  });

  it('refuses a config file whose key is an environment reference, changing nothing on the server', async () => {
    await using server = await startTestServer();
    const reg = await server.register('acme');
    const dir = mkdtempSync(join(tmpdir(), 'tidemark-rotate-'));
    const file = join(dir, 'agent.yaml');
    writeFileSync(file, `serverUrl: ${server.url}\nclientId: acme\ndatabaseId: ${reg.databaseId}\napiKey: { env: TIDEMARK_API_KEY }\n`);
    await expect(rotateKey(file, 0)).rejects.toThrow(/environment reference \(TIDEMARK_API_KEY\)/);
    const [row] = await server.db.query<{ n: number }>(`select count(*)::int as n from tidemark.database_key`);
    expect(row?.n).toBe(1);
  });
});
