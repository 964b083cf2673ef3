/**
 * The fleet's admin JSON API and the run report route, against a real server and PostgreSQL:
 * states worst first, filters, the detail of one database, the bounded run history, the admin key.
 */
import { describe, expect, it } from 'vitest';

import {
  adminPaths,
  buildPath,
  fleetDetailSchema,
  fleetListSchema,
  HEADER_AGENT_ID,
  type RegisterResult,
  RUN_HISTORY_LIMIT,
  type RunReport,
  type TableReport,
} from '../../src/shared/protocol.js';
import { startTestServer, type TestServer } from '../support/fixtures.js';

function table(name: string, over: Partial<TableReport> = {}): TableReport {
  return {
    table: name,
    outcome: 'ok',
    errorCode: null,
    errorMessage: null,
    rowsUploaded: 0,
    rowsDeleted: 0,
    rowsMismatched: 0,
    quarantinedRows: 0,
    quarantined: [],
    lagSeconds: 0,
    rowsBehind: 0,
    localCount: 10,
    localMaxVersion: '100',
    remoteCount: 10,
    remoteMaxVersion: '100',
    durationSeconds: 0.1,
    schemaState: null,
    ...over,
  };
}

function report(tables: TableReport[], over: Partial<RunReport> = {}): RunReport {
  return { agentVersion: '0.1.0', startedAt: new Date().toISOString(), durationSeconds: 1.5, horizonAgeSeconds: 0, heartbeat: false, tables, ...over };
}

async function send(server: TestServer, reg: RegisterResult, body: unknown, key = reg.apiKey): Promise<Response> {
  return fetch(`${server.url}${buildPath('databaseReport', { clientId: reg.clientId, databaseId: reg.databaseId })}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', [HEADER_AGENT_ID]: 'agent-1' },
    body: JSON.stringify(body),
  });
}

async function admin(server: TestServer, path: string, key = server.adminKey): Promise<Response> {
  return fetch(`${server.url}${path}`, { headers: { authorization: `Bearer ${key}` } });
}

describe('fleet admin API', () => {
  it('lists every database worst first with its state, filters by client and state, and details one database', async () => {
    await using server = await startTestServer();
    const ok = await server.register('acme', 'Lyon');
    const failing = await server.register('acme', 'Paris');
    const behind = await server.register('acme', 'Nantes');
    const quarantined = await server.register('globex', 'Berlin');
    const never = await server.register('globex', 'Rome');

    expect((await send(server, ok, report([table('public.items'), table('public.orders')]))).status).toBe(200);
    expect(
      (
        await send(
          server,
          failing,
          report([
            table('public.items', {
              outcome: 'error',
              errorCode: 'TM_REPLICA_SCHEMA_MISMATCH',
              errorMessage: 'column x differs',
              lagSeconds: 50,
              rowsBehind: null,
            }),
          ]),
        )
      ).status,
    ).toBe(200);
    await send(server, behind, report([table('public.items', { outcome: 'behind', errorCode: 'TM_RUN_INCOMPLETE', lagSeconds: 120, rowsBehind: 5000 })]));
    await send(
      server,
      quarantined,
      report([table('"Wé""ird"."a.b"', { quarantinedRows: 3, quarantined: [{ key: ['7'], error: 'violates check', attempts: 2 }] })]),
    );

    const res = await admin(server, adminPaths.fleet());
    expect(res.status).toBe(200);
    const { databases } = fleetListSchema.parse(await res.json());
    expect(databases.map((d) => [d.name, d.state])).toEqual([
      ['Rome', 'never'],
      ['Paris', 'error'],
      ['Berlin', 'quarantine'],
      ['Nantes', 'behind'],
      ['Lyon', 'ok'],
    ]);
    const paris = databases.find((d) => d.name === 'Paris');
    expect(paris).toMatchObject({
      clientId: 'acme',
      databaseId: failing.databaseId,
      agentVersion: '0.1.0',
      errorCode: 'TM_REPLICA_SCHEMA_MISMATCH',
      tables: 1,
    });
    expect(paris?.lastSuccessAt).toBeNull();
    expect(databases.find((d) => d.name === 'Lyon')).toMatchObject({ lagSeconds: 0, rowsBehind: 0, quarantinedRows: 0, tables: 2, errorCode: null });
    expect(databases.find((d) => d.name === 'Lyon')?.lastSuccessAt).toEqual(expect.any(String));
    expect(databases.find((d) => d.name === 'Nantes')).toMatchObject({ lagSeconds: 120, rowsBehind: 5000 });
    expect(databases.find((d) => d.name === 'Rome')).toMatchObject({ lastReportAt: null, agentVersion: null, lagSeconds: null, tables: 0 });

    const globex = fleetListSchema.parse(await (await admin(server, `${adminPaths.fleet()}?client=globex`)).json());
    expect(globex.databases.map((d) => d.name)).toEqual(['Rome', 'Berlin']);
    const errors = fleetListSchema.parse(await (await admin(server, `${adminPaths.fleet()}?state=error`)).json());
    expect(errors.databases.map((d) => d.name)).toEqual(['Paris']);
    expect((await admin(server, `${adminPaths.fleet()}?state=bogus`)).status).toBe(400);

    const detailRes = await admin(server, adminPaths.detail(quarantined.clientId, quarantined.databaseId.toUpperCase()));
    expect(detailRes.status).toBe(200);
    const detail = fleetDetailSchema.parse(await detailRes.json());
    expect(detail.database).toMatchObject({ name: 'Berlin', state: 'quarantine', quarantinedRows: 3 });
    expect(detail.tables).toEqual([
      expect.objectContaining({
        table: '"Wé""ird"."a.b"',
        lastOutcome: 'ok',
        localCount: 10,
        remoteCount: 10,
        quarantined: [{ key: ['7'], error: 'violates check', attempts: 2 }],
        resync: null,
      }),
    ]);
    expect(detail.runs).toEqual([
      expect.objectContaining({
        outcome: 'ok',
        durationSeconds: 1.5,
        tables: [{ table: '"Wé""ird"."a.b"', outcome: 'ok', errorCode: null, rowsUploaded: 0, rowsDeleted: 0 }],
      }),
    ]);
    expect((await admin(server, adminPaths.detail('acme', never.databaseId))).status).toBe(404);
    expect(fleetDetailSchema.parse(await (await admin(server, adminPaths.detail('globex', never.databaseId))).json()).runs).toEqual([]);
  });

  it('keeps the last runs only, newest first, and turns a database silent when its agent stops', async () => {
    await using server = await startTestServer({ fleetSilentAfterSeconds: 600 });
    const reg = await server.register('acme');
    for (let i = 0; i < RUN_HISTORY_LIMIT + 5; i++) {
      const r = await send(server, reg, report([table('public.items', { rowsUploaded: i })]));
      expect(r.status).toBe(200);
    }
    const detail = fleetDetailSchema.parse(await (await admin(server, adminPaths.detail(reg.clientId, reg.databaseId))).json());
    expect(detail.runs).toHaveLength(RUN_HISTORY_LIMIT);
    expect(detail.runs[0]?.tables[0]?.rowsUploaded).toBe(RUN_HISTORY_LIMIT + 4);
    expect(detail.runs.at(-1)?.tables[0]?.rowsUploaded).toBe(5);
    const stored = await server.db.query<{ n: number }>(`select count(*)::int as n from tidemark.run_report`);
    expect(stored[0]?.n).toBe(RUN_HISTORY_LIMIT);

    // The agent went quiet 11 minutes ago (its last report and its lease), past the 10-minute threshold.
    await server.db.query(`update tidemark.agent_report set reported_at = now() - interval '11 minutes'`);
    await server.db.query(`update tidemark.tenant_database set lease_expires_at = now() - interval '6 minutes'`);
    const { databases } = fleetListSchema.parse(await (await admin(server, adminPaths.fleet())).json());
    expect(databases[0]).toMatchObject({ state: 'silent' });
    // A request of the agent's (a renewed lease) is a sign of life too.
    await server.db.query(`update tidemark.tenant_database set lease_expires_at = now() + interval '4 minutes'`);
    expect(fleetListSchema.parse(await (await admin(server, adminPaths.fleet())).json()).databases[0]).toMatchObject({ state: 'ok' });
  });

  it('refuses reports and admin reads without the right key, and malformed reports', async () => {
    await using server = await startTestServer();
    const a = await server.register('acme');
    const b = await server.register('globex');
    expect((await admin(server, adminPaths.fleet(), 'wrong-admin-key-000000')).status).toBe(401);
    expect((await admin(server, adminPaths.detail(a.clientId, a.databaseId), 'wrong-admin-key-000000')).status).toBe(401);
    expect((await send(server, a, report([table('public.items')]), 'tmk_wrong')).status).toBe(401);
    expect((await send(server, a, report([table('public.items')]), b.apiKey)).status).toBe(403);
    expect((await send(server, a, { ...report([table('public.items')]), tables: [{ table: 'public.items' }] })).status).toBe(400);
    expect((await send(server, a, report([table('not a table name')]))).status).toBe(400);
    // One table named twice (two spellings): its last entry counts.
    expect((await send(server, a, report([table('public.items', { outcome: 'error' }), table('"public"."items"')]))).status).toBe(200);
    const [db] = fleetListSchema.parse(await (await admin(server, adminPaths.fleet())).json()).databases.filter((d) => d.clientId === 'acme');
    expect(db).toMatchObject({ state: 'ok', tables: 1 });
    await server.db.query(`delete from tidemark.agent_report`);
    const rows = await server.db.query(`select * from tidemark.agent_report`);
    expect(rows).toEqual([]);
  });
});
