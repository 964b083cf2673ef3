import { randomBytes } from 'node:crypto';
import { request } from 'node:http';

import pg from 'pg';
import { describe, expect, inject, it } from 'vitest';

import { startServer } from '../../src/server/start-server.js';
import { loadServerConfig } from '../../src/shared/config/server-config.js';
import type { Logger } from '../../src/shared/logger.js';
import { createDatabase, type TestServer } from '../support/fixtures.js';
import { call, copyText, declared } from './walls-http.js';

interface Line {
  level: 'debug' | 'info' | 'warn' | 'error';
  message: string;
  fields: object;
}

function recordingLogger(lines: Line[]): Logger {
  const log: Logger = {
    debug: (fields, message) => lines.push({ level: 'debug', message, fields }),
    info: (fields, message) => lines.push({ level: 'info', message, fields }),
    warn: (fields, message) => lines.push({ level: 'warn', message, fields }),
    error: (fields, message) => lines.push({ level: 'error', message, fields }),
    child: () => log,
  };
  return log;
}

/** Runs SQL on the cluster's maintenance database (not the server's own, which the test takes down). */
async function onCluster(sql: string): Promise<void> {
  const admin = new pg.Client({ connectionString: `${inject('pgBaseUrl')}postgres` });
  await admin.connect();
  try {
    await admin.query(sql);
  } finally {
    await admin.end();
  }
}

async function until(condition: () => Promise<boolean>): Promise<void> {
  while (!(await condition())) await new Promise((r) => setTimeout(r, 20));
}

async function loggedServer() {
  const db = await createDatabase('server');
  const lines: Line[] = [];
  const adminKey = randomBytes(16).toString('hex');
  const running = await startServer(
    loadServerConfig({ env: {}, flags: { databaseUrl: db.url, listen: '127.0.0.1:0', adminKey, allowSuperuser: true } }),
    recordingLogger(lines),
  );
  const server = {
    url: running.url,
    adminKey,
    db,
    register: async (clientId: string) => {
      const res = await call(running, 'POST', `/v1/admin/customers/${clientId}/databases`, {
        key: adminKey,
        body: JSON.stringify({ name: clientId }),
        contentType: 'application/json',
      });
      return res.body as unknown as { clientId: string; databaseId: string; apiKey: string };
    },
    async [Symbol.asyncDispose]() {
      await onCluster(`alter database ${db.name} allow_connections true`);
      await running.close();
      await db[Symbol.asyncDispose]();
    },
  } as TestServer;
  return { server, lines };
}

const terminateServerSessions = (dbName: string) =>
  onCluster(`select pg_terminate_backend(pid) from pg_stat_activity where datname = '${dbName}' and application_name = 'tidemark-server'`);

describe('the server rides out its database going away', () => {
  it('answers 503 with Retry-After while the database is unreachable, fails /readyz, and recovers by itself', async () => {
    const { server, lines } = await loggedServer();
    await using _s = server;
    const { reg, path } = await declared(server, 'alpha');
    expect((await call(server, 'POST', path, { key: reg.apiKey, ...copyText('1\t1\tone\n') })).status).toBe(200);

    // The database goes away: sessions killed, no new ones accepted (as during a restart or failover).
    await onCluster(`alter database ${server.db.name} allow_connections false`);
    await terminateServerSessions(server.db.name);
    for (const res of [
      await call(server, 'GET', path, { key: reg.apiKey }),
      await call(server, 'POST', path, { key: reg.apiKey, ...copyText('2\t2\ttwo\n') }),
    ]) {
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('5');
      expect(res.body.error?.code).toBe('TM_SERVER_UNAVAILABLE');
    }
    expect((await call(server, 'GET', '/readyz')).status).toBe(503);
    expect((await call(server, 'GET', '/healthz')).status).toBe(200);

    // Back: the same requests work again, with no restart of the server.
    await onCluster(`alter database ${server.db.name} allow_connections true`);
    expect((await call(server, 'GET', '/readyz')).status).toBe(200);
    const again = await call(server, 'POST', path, { key: reg.apiKey, ...copyText('2\t2\ttwo\n') });
    expect(again.status).toBe(200);
    expect(again.body.summary).toMatchObject({ rowCount: 2 });
    expect(lines.filter((l) => l.level === 'error')).toEqual([]);
    expect(lines.some((l) => l.level === 'warn' && l.message === 'database unavailable')).toBe(true);
  });

  it('answers 503 to an upload whose session is terminated mid-COPY, without crashing', async () => {
    const { server, lines } = await loggedServer();
    await using _s = server;
    const { reg, path } = await declared(server, 'alpha');
    // A streamed body the test holds open: the server is inside COPY when its session is killed.
    const url = new URL(`${server.url}${path}`);
    const answer = new Promise<{ status: number; retryAfter: string | undefined; body: string }>((resolve, reject) => {
      const req = request(
        url,
        {
          method: 'POST',
          headers: { authorization: `Bearer ${reg.apiKey}`, 'content-type': 'text/tab-separated-values', 'x-tidemark-agent-id': 'agent-1' },
        },
        (res) => {
          let body = '';
          res.on('data', (c: Buffer) => {
            body += c.toString();
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'], body }));
        },
      );
      req.on('error', reject);
      req.write('1\t1\tone\n');
      void (async () => {
        await until(
          async () =>
            (
              await server.db.query(
                `select 1 from pg_stat_activity where datname = current_database() and application_name = 'tidemark-server' and query like 'copy %'`,
              )
            ).length > 0,
        );
        await terminateServerSessions(server.db.name);
        req.end('2\t2\ttwo\n');
      })().catch(reject);
    });
    const res = await answer;
    expect(res.status).toBe(503);
    expect(res.retryAfter).toBe('5');
    expect(JSON.parse(res.body).error.code).toBe('TM_SERVER_UNAVAILABLE');
    // The next request gets a fresh session and nothing of the killed one was written.
    const summary = await call(server, 'GET', path, { key: reg.apiKey });
    expect(summary.body).toMatchObject({ rowCount: 0 });
    expect(lines.filter((l) => l.level === 'error')).toEqual([]);
  });

  it('logs a client that goes away mid-upload as info, not as an error', async () => {
    const { server, lines } = await loggedServer();
    await using _s = server;
    const { reg, path } = await declared(server, 'alpha');
    const req = request(new URL(`${server.url}${path}`), {
      method: 'POST',
      headers: { authorization: `Bearer ${reg.apiKey}`, 'content-type': 'text/tab-separated-values', 'x-tidemark-agent-id': 'agent-1' },
    });
    req.on('error', () => {}); // the test resets it on purpose
    req.write('1\t1\tone\n');
    await until(
      async () =>
        (
          await server.db.query(
            `select 1 from pg_stat_activity where datname = current_database() and application_name = 'tidemark-server' and query like 'copy %'`,
          )
        ).length > 0,
    );
    req.destroy();
    await until(async () => lines.some((l) => l.message === 'client went away' || l.level === 'error'));
    expect(lines.filter((l) => l.level === 'error')).toEqual([]);
    expect(lines.find((l) => l.message === 'client went away')?.level).toBe('info');
    expect(await server.db.query(`select count(*)::int as n from public.items`)).toEqual([{ n: 0 }]);
  });
});
