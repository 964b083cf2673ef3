/**
 * Load shedding (issue 10, target 4): over capacity the server answers 503 TM_SERVER_OVERLOADED
 * with Retry-After before touching its database, and the agent waits and sends the same batch
 * again, no smaller. The capacity bound is injected (poolWaitingLimit), so nothing depends on speed.
 */
import { describe, expect, it } from 'vitest';

import { HttpRemote } from '../../src/agent/http-remote.js';
import { RemoteError } from '../../src/agent/remote.js';
import { ErrorCode } from '../../src/shared/errors.js';
import { createDatabase, dumpRows, startRecordingAgent, startTestServer } from '../support/fixtures.js';

describe('load shedding', () => {
  it('answers 503 with Retry-After over capacity, which the agent reads as overloaded, not as a failure of the server', async () => {
    // A bound of -1 waiting requests: every tenant request is over capacity.
    await using server = await startTestServer({}, { poolWaitingLimit: -1 });
    const reg = await server.register('acme');
    const res = await fetch(`${server.url}/v1/customers/acme/databases/${reg.databaseId}/tables/public.items`, {
      headers: { authorization: `Bearer ${reg.apiKey}` },
    });
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('2');
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe(ErrorCode.SERVER_OVERLOADED);
    // Health and readiness are not shed.
    expect((await fetch(`${server.url}/readyz`)).status).toBe(200);

    const remote = new HttpRemote({ serverUrl: server.url, clientId: 'acme', databaseId: reg.databaseId, apiKey: reg.apiKey, agentId: 'a1', gzip: false });
    try {
      const err = await remote.summary({ schema: 'public', name: 'items' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RemoteError);
      expect(err).toMatchObject({ errorClass: 'overloaded', code: ErrorCode.SERVER_OVERLOADED, retryAfterSeconds: 2, retryable: true });
    } finally {
      remote.close();
    }
  });

  it('the agent sends a shed batch again after Retry-After, at the same size, and converges', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await local.query(`create table items (id int primary key, name text not null)`);
    await local.query(`insert into items select i, 'item ' || i from generate_series(1, 100) i`);
    const reg = await server.register('acme');
    await using agent = await startRecordingAgent(local, server, reg);
    await agent.local.tracking.track('items');
    agent.recording.inject({ match: (c) => c.method === 'upload' && (c.rows ?? 0) > 0, errorClass: 'overloaded', times: 2, retryAfterSeconds: 0 });
    const tick = await agent.agent.tick();
    expect(tick.tables[0]?.error).toBeUndefined();
    expect(tick.converged).toBe(true);
    const uploads = agent.recording.uploads();
    expect(uploads.map((c) => [c.rows, c.failed ?? 'ok'])).toEqual([
      [100, 'overloaded'],
      [100, 'overloaded'],
      [100, 'ok'],
    ]);
    expect(await agent.local.quarantine.count({ schema: 'public', name: 'items' })).toBe(0);
    expect(await dumpRows(server.db, 'public.items')).toEqual(await dumpRows(local, 'public.items'));
  });
});
