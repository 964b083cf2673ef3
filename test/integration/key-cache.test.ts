/**
 * The server's key cache (src/server/key-cache.ts): a key authenticated lately costs no statement;
 * a revocation or rotation through this process ends it at once; one made elsewhere (another server
 * process, or by hand) within keyCacheSeconds, by the server's injected clock.
 */
import { describe, expect, it } from 'vitest';

import { adminRequest } from '../../src/cli/admin-client.js';
import { StatementCounter } from '../../src/server/statement-counter.js';
import { adminPaths, buildPath, tablePath } from '../../src/shared/protocol.js';
import { startTestServer } from '../support/fixtures.js';

const KEY_LOOKUP = /from tidemark\.database_key\s+where key_hash/;

describe('key cache', () => {
  it('spares the key lookup within keyCacheSeconds, forgets a key revoked or rotated out through this process at once, and one revoked elsewhere once the time is up', async () => {
    let now = Date.parse('2026-01-01T00:00:00Z');
    const counter = new StatementCounter(true);
    await using server = await startTestServer({ keyCacheSeconds: 10 }, { statements: counter, now: () => now });
    const reg = await server.register('acme');
    const summaryUrl = `${server.url}${tablePath(reg.clientId, reg.databaseId, { schema: 'public', name: 'items' })}`;
    const get = async (key: string): Promise<number> => (await fetch(summaryUrl, { headers: { authorization: `Bearer ${key}` } })).status;
    const lookups = (): number => counter.texts.filter((t) => KEY_LOOKUP.test(t)).length;

    // The first request looks the key up; the next ones within 10 s do not.
    counter.reset();
    expect(await get(reg.apiKey)).toBe(404);
    expect(lookups()).toBe(1);
    counter.reset();
    expect(await get(reg.apiKey)).toBe(404);
    now += 9_000;
    expect(await get(reg.apiKey)).toBe(404);
    expect(lookups()).toBe(0);
    // Past the time to live, it is looked up again.
    now += 2_000;
    counter.reset();
    expect(await get(reg.apiKey)).toBe(404);
    expect(lookups()).toBe(1);

    // Revoked through this process: refused at the next request, cached or not.
    const revoked = await adminRequest<{ apiKey: string }>(server.url, server.adminKey, 'POST', adminPaths.revokeKeys(reg.clientId, reg.databaseId));
    expect(await get(reg.apiKey)).toBe(401);
    expect(await get(revoked.apiKey)).toBe(404);

    // Rotated through this process with no overlap: the former key stops at once.
    const keysUrl = `${server.url}${buildPath('databaseKeys', { clientId: reg.clientId, databaseId: reg.databaseId })}`;
    const issued = await fetch(keysUrl, { method: 'POST', headers: { authorization: `Bearer ${revoked.apiKey}` } });
    expect(issued.status).toBe(201);
    const rotated = ((await issued.json()) as { apiKey: string }).apiKey;
    const confirmUrl = `${server.url}${buildPath('databaseKeyConfirm', { clientId: reg.clientId, databaseId: reg.databaseId })}`;
    const confirmed = await fetch(confirmUrl, {
      method: 'POST',
      headers: { authorization: `Bearer ${rotated}`, 'content-type': 'application/json' },
      body: JSON.stringify({ overlapSeconds: 0 }),
    });
    expect(confirmed.status).toBe(200);
    expect(await get(revoked.apiKey)).toBe(401);

    // Deleted by hand (as another server process's revocation would be): still trusted here until
    // keyCacheSeconds have passed since it was looked up, then refused.
    expect(await get(rotated)).toBe(404);
    await server.db.query(`delete from tidemark.database_key where client_id = $1`, [reg.clientId]);
    now += 5_000;
    expect(await get(rotated)).toBe(404);
    now += 5_001;
    expect(await get(rotated)).toBe(401);
  });

  it('asks the database at every request with keyCacheSeconds 0', async () => {
    const counter = new StatementCounter(true);
    await using server = await startTestServer({ keyCacheSeconds: 0 }, { statements: counter });
    const reg = await server.register('acme');
    const url = `${server.url}${tablePath(reg.clientId, reg.databaseId, { schema: 'public', name: 'items' })}`;
    counter.reset();
    for (let i = 0; i < 3; i++) expect((await fetch(url, { headers: { authorization: `Bearer ${reg.apiKey}` } })).status).toBe(404);
    expect(counter.texts.filter((t) => KEY_LOOKUP.test(t))).toHaveLength(3);
    await server.db.query(`delete from tidemark.database_key where client_id = $1`, [reg.clientId]);
    expect((await fetch(url, { headers: { authorization: `Bearer ${reg.apiKey}` } })).status).toBe(401);
  });
});
