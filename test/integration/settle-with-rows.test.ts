/**
 * A run whose changes fit in one batch sends its settle with that batch (two requests: the
 * declaration and the upload). Whenever something must come between the rows and the settle, or
 * the batch fails, the settle goes alone afterwards, as before, and nothing is settled early.
 */
import { describe, expect, it } from 'vitest';

import { createDatabase, dumpRows, startRecordingAgent, startTestServer } from '../support/fixtures.js';

const shape = (calls: { method: string; rows?: number; settle?: boolean; failed?: string }[]): string[] =>
  calls.map((c) => `${c.method}${c.rows !== undefined ? `:${c.rows}` : ''}${c.settle ? '+settle' : ''}${c.failed ? `!${c.failed}` : ''}`);

describe('the settle with the last batch', () => {
  it('goes with a run of few changes, not with a delete above the local versions, and alone after a failed batch', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await local.query(`create table items (id int primary key, name text not null)`);
    await local.query(`insert into items select i, 'item ' || i from generate_series(1, 50) i`);
    const reg = await server.register('acme');
    await using agent = await startRecordingAgent(local, server, reg);
    await agent.local.tracking.track('items');
    for (let i = 0; i < 2; i++) expect((await agent.agent.tick()).converged).toBe(true);
    const tick = async (): Promise<string[]> => {
      agent.recording.calls.length = 0;
      expect((await agent.agent.tick()).converged).toBe(true);
      expect(await dumpRows(server.db, 'public.items')).toEqual(await dumpRows(local, 'public.items'));
      return shape(agent.recording.calls);
    };

    // A few changes: the declaration, then the rows with the settle. The next run is idle.
    await local.query(`update items set name = 'changed' where id <= 3`);
    expect(await tick()).toEqual(['declare', 'upload:3+settle']);
    expect(await tick()).toEqual(['declare+settle']);

    // The newest row deleted: the rows above the local max version are deleted first, then the settle.
    await local.query(`insert into items values (100, 'newest')`);
    expect(await tick()).toEqual(['declare', 'upload:1+settle']);
    await local.query(`delete from items where id = 100`);
    const afterDelete = await tick();
    expect(afterDelete.slice(0, 2)).toEqual(['declare', 'delete']);
    expect(afterDelete).toContain('upload:0+settle');
    expect(afterDelete.filter((c) => c.startsWith('upload:') && c !== 'upload:0+settle')).toEqual([]);

    // The batch carrying the settle times out: it is cut in halves without the settle, and the
    // settle goes alone once they are through.
    await local.query(`update items set name = 'again' where id <= 4`);
    agent.recording.inject({ match: (c) => c.method === 'upload' && c.settle === true && (c.rows ?? 0) > 0, errorClass: 'timeout' });
    expect(await tick()).toEqual(['declare', 'upload:4+settle!timeout', 'upload:2', 'upload:2', 'upload:0+settle']);
    expect(await tick()).toEqual(['declare+settle']);
  });
});
