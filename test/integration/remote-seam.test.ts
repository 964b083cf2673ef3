/**
 * The run logic speaks to a `Remote`, not to HTTP: a recording remote around the HTTP one sees the
 * calls of a run in order, and a fault it injects (a transport-neutral RemoteError) is handled like
 * the same failure coming over the wire.
 */
import { describe, expect, it } from 'vitest';

import { createDatabase, dumpRows, startTestAgent, startTestServer } from '../support/fixtures.js';
import { RecordingRemote } from '../support/recording-remote.js';

describe('remote seam', () => {
  it('runs a table through any Remote: declare, row batches, then one settle', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await local.query(`create table items (id int primary key, name text not null)`);
    await local.query(`insert into items select i, 'item ' || i from generate_series(1, 300) i`);
    const reg = await server.register('acme');
    let recording: RecordingRemote | undefined;
    await using agent = await startTestAgent(
      local,
      server,
      reg,
      { batch: { minRows: 100, maxRows: 100 } },
      { wrapRemote: (r) => (recording = new RecordingRemote(r)) },
    );
    await agent.local.tracking.track('items');
    expect((await agent.agent.tick({ checkCount: true })).converged).toBe(true);
    const calls = recording?.calls ?? [];
    expect(calls[0]?.method).toBe('declare');
    expect(recording?.uploads().map((c) => c.rows)).toEqual([100, 100, 100]);
    expect(calls.filter((c) => c.settle).length).toBe(1);
    expect(await dumpRows(server.db, 'public.items')).toEqual(await dumpRows(local, 'public.items'));
  });

  it('fails the run on an injected auth error and converges once the remote answers again', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await local.query(`create table items (id int primary key)`);
    await local.query(`insert into items select generate_series(1, 10)`);
    const reg = await server.register('acme');
    let recording: RecordingRemote | undefined;
    await using agent = await startTestAgent(local, server, reg, {}, { wrapRemote: (r) => (recording = new RecordingRemote(r)) });
    await agent.local.tracking.track('items');
    recording?.inject({ match: (c) => c.method === 'upload', errorClass: 'auth' });
    const failed = await agent.agent.tick();
    expect(failed.converged).toBe(false);
    expect(failed.tables[0]?.error?.code).toBe('TM_AUTH_UNAUTHENTICATED');
    expect((await agent.agent.tick({ checkCount: true })).converged).toBe(true);
  });
});
