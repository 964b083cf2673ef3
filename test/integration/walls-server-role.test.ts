import { randomBytes } from 'node:crypto';

import { describe, expect, it } from 'vitest';

import { startServer } from '../../src/server/start-server.js';
import { loadServerConfig } from '../../src/shared/config/server-config.js';
import { silentLogger } from '../../src/shared/logger.js';
import { createDatabase } from '../support/fixtures.js';

const flagsFor = (databaseUrl: string) => ({ databaseUrl, listen: '127.0.0.1:0', adminKey: randomBytes(16).toString('hex'), logLevel: 'silent' });

describe('the server role and the metrics endpoint', () => {
  it('refuses to start as a superuser unless allowed', async () => {
    await using db = await createDatabase('server');
    await expect(startServer(loadServerConfig({ env: {}, flags: flagsFor(db.url) }), silentLogger)).rejects.toThrow(
      /superuser or BYPASSRLS.*--allow-superuser/,
    );
    const allowed = await startServer(loadServerConfig({ env: { TIDEMARK_ALLOW_SUPERUSER: '1' }, flags: flagsFor(db.url) }), silentLogger);
    await allowed.close();
  });

  it('serves /metrics on its own listener behind a bearer token', async () => {
    await using db = await createDatabase('server');
    const token = randomBytes(16).toString('hex');
    const running = await startServer(
      loadServerConfig({ env: {}, flags: { ...flagsFor(db.url), allowSuperuser: true, metricsListen: '127.0.0.1:0', metricsBearerToken: token } }),
      silentLogger,
    );
    try {
      expect(new URL(running.metricsUrl).port).not.toBe(new URL(running.url).port);
      expect((await fetch(`${running.url}/metrics`)).status).toBe(404);
      expect((await fetch(running.metricsUrl)).status).toBe(401);
      expect((await fetch(running.metricsUrl, { headers: { authorization: 'Bearer wrong-token-of-some-length' } })).status).toBe(401);
      const ok = await fetch(running.metricsUrl, { headers: { authorization: `Bearer ${token}` } });
      expect(ok.status).toBe(200);
      expect(await ok.text()).toMatch(/tidemark_server_auth_failures_total/);
    } finally {
      await running.close();
    }
  });
});
