import { randomBytes } from 'node:crypto';

import { describe, expect, it } from 'vitest';

import { AuthThrottle } from '../../src/server/auth-throttle.js';
import { startServer } from '../../src/server/start-server.js';
import { loadServerConfig } from '../../src/shared/config/server-config.js';
import { silentLogger } from '../../src/shared/logger.js';
import { createDatabase, type TestServer } from '../support/fixtures.js';
import { call, declared, metricValue } from './walls-http.js';

/** A server with a throttle of 5 failures per 60 s window on a clock the test moves. */
async function throttledServer() {
  const db = await createDatabase('server');
  const clock = { ms: Date.UTC(2026, 0, 1) };
  const adminKey = randomBytes(16).toString('hex');
  const config = loadServerConfig({
    env: {},
    flags: {
      databaseUrl: db.url,
      listen: '127.0.0.1:0',
      adminKey,
      logLevel: 'silent',
      authFailureLimit: 5,
      authFailureWindowSeconds: 60,
      allowSuperuser: true,
    },
  });
  const running = await startServer(config, silentLogger, { now: () => clock.ms });
  const server = {
    url: running.url,
    adminKey,
    db,
    register: async (clientId: string) =>
      (
        await call(running, 'POST', `/v1/admin/customers/${clientId}/databases`, {
          key: adminKey,
          body: JSON.stringify({ name: clientId }),
          contentType: 'application/json',
        })
      ).body as unknown as { clientId: string; databaseId: string; apiKey: string },
    async [Symbol.asyncDispose]() {
      await running.close();
      await db[Symbol.asyncDispose]();
    },
  } as TestServer;
  return { server, clock };
}

describe('failed authentication is throttled', () => {
  it('answers 429 with Retry-After after the limit per address, counts it, and lifts it when the window ends', async () => {
    const { server, clock } = await throttledServer();
    await using _s = server;
    const { reg, path } = await declared(server, 'alpha');
    for (let i = 0; i < 5; i++) expect((await call(server, 'GET', path, { key: `tmk_guess${i}` })).status).toBe(401);
    const throttled = await call(server, 'GET', path, { key: 'tmk_guess-more' });
    expect(throttled.status).toBe(429);
    expect(throttled.headers.get('retry-after')).toBe('60');
    // The address is throttled before its key is looked up (the real key too, from this address).
    expect((await call(server, 'GET', path, { key: reg.apiKey })).status).toBe(429);
    expect(await metricValue(server, 'tidemark_server_auth_failures_total{outcome="rejected"}')).toBe(5);
    expect(await metricValue(server, 'tidemark_server_auth_failures_total{outcome="throttled"}')).toBe(2);
    clock.ms += 30_000;
    expect((await call(server, 'GET', path, { key: 'tmk_x' })).headers.get('retry-after')).toBe('30');
    clock.ms += 30_000;
    expect((await call(server, 'GET', path, { key: reg.apiKey })).status).toBe(200);
  });

  it('throttles the admin key the same way', async () => {
    const { server } = await throttledServer();
    await using _s = server;
    // A wrong key is named as such; a missing one as missing (neither counts against the other's message).
    expect((await call(server, 'GET', '/v1/admin/tenants')).body.error?.message).toMatch(/^admin key required/);
    for (let i = 0; i < 4; i++) {
      const r = await call(server, 'GET', '/v1/admin/tenants', { key: `wrong-${i}` });
      expect(r.status).toBe(401);
      expect(r.body.error?.message).toMatch(/^admin key not accepted/);
    }
    expect((await call(server, 'GET', '/v1/admin/tenants', { key: server.adminKey })).status).toBe(429);
  });
});

describe('the admin key on the key routes', () => {
  it('is checked as on every admin route: the same answers, and its failures count with theirs', async () => {
    const { server } = await throttledServer();
    await using _s = server;
    const tokens = '/v1/admin/customers/acme/enrollment-tokens';
    const other = await call(server, 'GET', '/v1/admin/tenants', { key: 'wrong-0' });
    for (let i = 1; i < 4; i++) {
      const r = await call(server, 'POST', tokens, { key: `wrong-${i}`, body: '{}', contentType: 'application/json' });
      expect(r.status).toBe(401);
      expect(r.body.error?.message).toBe(other.body.error?.message);
    }
    expect((await call(server, 'POST', tokens, { body: '{}', contentType: 'application/json' })).body.error?.message).toMatch(/^admin key required/);
    expect((await call(server, 'GET', '/v1/admin/tenants', { key: server.adminKey })).status).toBe(429);
  });
});

describe('the throttle per key prefix', () => {
  it('slows a guess at one key spread over addresses without locking out the agent that holds the key', () => {
    const clock = { ms: 0 };
    const throttle = new AuthThrottle({ limit: 3, windowSeconds: 60, now: () => clock.ms });
    const real = 'tmk_AbCdEfGh-the-rest-of-the-real-key';
    for (const address of ['10.0.0.1', '10.0.0.2', '10.0.0.3']) throttle.recordFailure(address, `tmk_AbCdEfGh-guess-${address}`);
    // Each guessing address failed once, so the prefix's limit applies to it.
    expect(throttle.retryAfterSeconds('10.0.0.1', 'tmk_AbCdEfGh-guess-again')).toBe(60);
    // The agent's address never failed: its key is checked.
    expect(throttle.retryAfterSeconds('192.0.2.7', real)).toBe(0);
    // Another prefix is unaffected, and the window ends.
    expect(throttle.retryAfterSeconds('10.0.0.1', 'tmk_ZZZZZZZZ-other')).toBe(0);
    clock.ms += 60_000;
    expect(throttle.retryAfterSeconds('10.0.0.1', 'tmk_AbCdEfGh-guess-again')).toBe(0);
  });

  it('remembers a bounded number of addresses', () => {
    const throttle = new AuthThrottle({ limit: 1, windowSeconds: 60, now: () => 0, maxEntries: 100 });
    for (let i = 0; i < 1000; i++) throttle.recordFailure(`10.0.${Math.floor(i / 256)}.${i % 256}`, `k${i}`);
    expect(throttle.retryAfterSeconds('10.0.3.231', 'k999')).toBe(60);
    expect(throttle.retryAfterSeconds('10.0.0.0', 'k0')).toBe(0);
  });
});
