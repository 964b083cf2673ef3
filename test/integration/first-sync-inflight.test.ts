/**
 * A first sync keeps several upload requests in flight (batch.firstSyncInFlight): the server loads
 * them in parallel. What must still hold: each batch whole or not at all, no row lost when one batch
 * fails for its size while a later one is applied, and a resume point that never passes a row the
 * server lacks. The order of events is forced through the recording remote's hook (a request waits
 * for another to arrive, or to be applied), never by time.
 */
import { setTimeout as sleep } from 'node:timers/promises';

import { describe, expect, it } from 'vitest';
import { createDatabase, dumpRows, startRecordingAgent, startTestServer, type TestDatabase } from '../support/fixtures.js';
import type { RecordingRemote, RemoteCall } from '../support/recording-remote.js';

const TOTAL = 1000;
const BATCH_ROWS = 100;

async function serverRows(server: { db: TestDatabase }): Promise<number> {
  const [r] = await server.db.query<{ n: number }>(`select count(*)::int as n from items`);
  return r?.n ?? 0;
}

/**
 * The local resume point's key (rows are 1..TOTAL, all of one version, uploaded in key order) must
 * never pass a row the server lacks: every id up to it is on the server.
 */
async function checkResumePoint(local: TestDatabase, server: { db: TestDatabase }): Promise<void> {
  const [state] = await local.query<{ k: string | null }>(`select upload_resume->'after'->'key'->>0 as k from tidemark.table_state`);
  if (!state?.k) return;
  const [held] = await server.db.query<{ n: number }>(`select count(*)::int as n from items where id <= $1::int`, [Number(state.k)]);
  expect(held?.n, `resume point ${state.k} passes rows the server lacks`).toBe(Number(state.k));
}

async function setUp(local: TestDatabase): Promise<void> {
  await local.query(`create table items (id int primary key, name text not null)`);
  await local.query(`insert into items select i, 'item ' || i from generate_series(1, ${TOTAL}) i`);
}

const isRowsUpload = (c: RemoteCall): boolean => c.method === 'upload' && (c.rows ?? 0) > 0;

/** Counts the recording remote's uploads of rows in flight at once; returns the most seen so far. */
function inFlightOf(recording: RecordingRemote): () => number {
  let inFlight = 0;
  let most = 0;
  const wrap = recording.upload.bind(recording);
  recording.upload = async (table, rows, options) => {
    const counts = rows.length > 0;
    if (counts) most = Math.max(most, ++inFlight);
    try {
      return await wrap(table, rows, options);
    } finally {
      if (counts) inFlight--;
    }
  };
  return () => most;
}

describe('first sync with several requests in flight', () => {
  it('sends the next batch while the first is in flight, never more than the setting, and converges', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await setUp(local);
    const reg = await server.register('acme');
    await using agent = await startRecordingAgent(local, server, reg, {
      batch: { minRows: BATCH_ROWS, maxRows: BATCH_ROWS, firstSyncInFlight: 2 },
    });
    await agent.local.tracking.track('items');

    let thirdArrived: () => void = () => {};
    const third = new Promise<void>((resolve) => {
      thirdArrived = resolve;
    });
    let uploads = 0;
    agent.recording.beforeCall = async (call) => {
      if (!isRowsUpload(call)) return;
      // Numbered as they arrive, before anything is awaited: the second and third arrive together.
      const n = ++uploads;
      await checkResumePoint(local, server);
      if (n === 3) thirdArrived();
      // The first batch goes alone (no size is proven yet). The second is held until the third
      // request arrives: only an uploader that keeps two in flight gets there (one that waits for
      // each answer would wait here for good).
      if (n === 2) await third;
    };
    const maxInFlight = inFlightOf(agent.recording);

    const tick = await agent.agent.tick({ checkCount: true });
    expect(tick.tables[0]?.error).toBeUndefined();
    expect(tick.converged).toBe(true);
    expect(maxInFlight()).toBe(2);
    expect(agent.recording.uploads().map((c) => c.rows)).toEqual(Array(TOTAL / BATCH_ROWS).fill(BATCH_ROWS));
    expect(await dumpRows(server.db, 'public.items')).toEqual(await dumpRows(local, 'public.items'));
    // Converged: the resume point is gone, and the history has one row per batch.
    expect(await local.query(`select upload_resume from tidemark.table_state`)).toEqual([{ upload_resume: null }]);
    const [h] = await local.query<{ n: number }>(`select count(*)::int as n from tidemark.batch_history where outcome = 'ok'`);
    expect(h?.n).toBe(TOTAL / BATCH_ROWS);
  });

  it('cuts again a batch that failed for its size while the next one was applied, losing no row and keeping the resume point behind it', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await setUp(local);
    const reg = await server.register('acme');
    await using agent = await startRecordingAgent(local, server, reg, {
      batch: { minRows: 1, maxRows: BATCH_ROWS, initialBytes: 1024 * 1024, firstSyncInFlight: 2 },
    });
    await agent.local.tracking.track('items');

    let uploads = 0;
    let failing: RemoteCall | null = null;
    let thirdArrived: () => void = () => {};
    const third = new Promise<void>((resolve) => {
      thirdArrived = resolve;
    });
    agent.recording.beforeCall = async (call) => {
      if (!isRowsUpload(call)) return;
      // Numbered as they arrive, before anything is awaited: the second and third arrive together.
      const n = ++uploads;
      if (n === 2) failing = call;
      await checkResumePoint(local, server);
      if (n === 3) thirdArrived();
      if (n !== 2) return;
      // The first batch (rows 1-100) goes alone and is applied. The second (101-200) fails as too
      // large only once the third (201-300) is applied.
      await third;
      while ((await serverRows(server)) < 2 * BATCH_ROWS) await sleep(10);
    };
    agent.recording.inject({ match: (c) => c === failing, errorClass: 'too_large' });

    const tick = await agent.agent.tick({ checkCount: true });
    expect(tick.tables[0]?.error).toBeUndefined();
    expect(tick.converged).toBe(true);
    expect(tick.tables[0]?.quarantined).toBe(0);
    const sent = agent.recording.uploads();
    expect(sent[0]).toMatchObject({ rows: BATCH_ROWS });
    expect(sent[0]?.failed).toBeUndefined();
    expect(sent[1]).toMatchObject({ rows: BATCH_ROWS, failed: 'too_large' });
    expect(sent[2]).toMatchObject({ rows: BATCH_ROWS });
    expect(sent[2]?.failed).toBeUndefined();
    // The failed rows went out again, cut in half (the uploader's bisection), before anything else.
    expect(sent[3]?.rows).toBeLessThanOrEqual(BATCH_ROWS / 2);
    // Every row arrived exactly once as an applied batch.
    expect(sent.filter((c) => !c.failed).reduce((n, c) => n + (c.rows ?? 0), 0)).toBe(TOTAL);
    expect(await dumpRows(server.db, 'public.items')).toEqual(await dumpRows(local, 'public.items'));
    expect(await local.query(`select upload_resume from tidemark.table_state`)).toEqual([{ upload_resume: null }]);
  });

  it('keeps each batch within its share of batch.maxBytes while two may be in flight, so the agent holds no more than with one', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await local.query(`create table items (id int primary key, name text not null)`);
    // About 110 bytes of COPY text a row, 1.1 MB in all.
    await local.query(`insert into items select i, repeat(md5(i::text), 3) from generate_series(1, 10000) i`);
    const reg = await server.register('acme');
    const MAX = 128 * 1024;
    await using agent = await startRecordingAgent(local, server, reg, {
      batch: { initialBytes: MAX, maxBytes: MAX, minBytes: 16 * 1024, firstSyncInFlight: 2 },
    });
    await agent.local.tracking.track('items');
    const bodies: number[] = [];
    const wrap = agent.recording.upload.bind(agent.recording);
    agent.recording.upload = async (table, rows, options) => {
      if (rows.length > 0) bodies.push(rows.length);
      return wrap(table, rows, options);
    };

    const tick = await agent.agent.tick({ checkCount: true });
    expect(tick.converged).toBe(true);
    // The tuner starts at maxBytes (initialBytes), and each batch takes half of it.
    expect(Math.max(...bodies)).toBeLessThanOrEqual(MAX / 2);
    expect(bodies[0]).toBeGreaterThan(MAX / 2 - 200);
    expect(await dumpRows(server.db, 'public.items')).toEqual(await dumpRows(local, 'public.items'));
  });

  it('sends a batch of a size not yet applied alone: a size the server refuses is refused once, not once per request in flight', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await local.query(`create table items (id int primary key, name text not null)`);
    // Exactly 100 bytes of COPY text a row (a five-digit id, a tab, 93 letters, a newline), 1 MB in
    // all: a batch cut at limits a batch the server applied was cut at is never larger than it.
    await local.query(`insert into items select i, repeat('x', 93) from generate_series(10000, 19999) i`);
    const reg = await server.register('acme');
    await using agent = await startRecordingAgent(local, server, reg, {
      batch: { initialBytes: 16 * 1024, maxBytes: 256 * 1024, minBytes: 4 * 1024, firstSyncInFlight: 2 },
    });
    await agent.local.tracking.track('items');
    // A proxy's body limit: the tuner grows past it, bisects below it and probes above it.
    const LIMIT = 40_050;
    agent.recording.inject({ match: (c) => c.method === 'upload' && (c.bytes ?? 0) > LIMIT, errorClass: 'too_large', times: 1000 });
    // Answers come in pairs: an answer waits while another request of the upload is at the server,
    // so both reach the uploader together and both slots are free when the tuner's size changes.
    // Over the limit, at most one request may be waiting for its answer at any time.
    const wrap = agent.recording.upload.bind(agent.recording);
    let atServer = 0;
    let open = 0;
    let overLimit = 0;
    let worst = 0;
    let most = 0;
    let waiting: (() => void) | null = null;
    agent.recording.upload = async (table, rows, options) => {
      if (rows.length === 0) return wrap(table, rows, options);
      const over = rows.length > LIMIT;
      atServer++;
      most = Math.max(most, ++open);
      if (over) worst = Math.max(worst, ++overLimit);
      try {
        let answer: Awaited<ReturnType<typeof wrap>> | undefined;
        let failure: unknown;
        try {
          answer = await wrap(table, rows, options);
        } catch (e) {
          failure = e;
        }
        atServer--;
        if (waiting) {
          const release = waiting;
          waiting = null;
          release();
        } else if (failure === undefined && atServer > 0) {
          await new Promise<void>((resolve) => {
            waiting = resolve;
          });
        }
        if (failure !== undefined) throw failure;
        return answer as Awaited<ReturnType<typeof wrap>>;
      } finally {
        open--;
        if (over) overLimit--;
      }
    };

    const tick = await agent.agent.tick({ checkCount: true });
    expect(tick.tables[0]?.error).toBeUndefined();
    expect(tick.converged).toBe(true);
    const failed = agent.recording.uploads().filter((c) => c.failed === 'too_large');
    expect(failed.length).toBeGreaterThan(0);
    expect(worst).toBe(1);
    // Below what was applied, two requests stayed in flight.
    expect(most).toBe(2);
    expect(await dumpRows(server.db, 'public.items')).toEqual(await dumpRows(local, 'public.items'));
  });

  it('leaves the first rolling verification slice to the run after the first sync', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await setUp(local);
    const reg = await server.register('acme');
    await using agent = await startRecordingAgent(local, server, reg, { verification: { periodHours: 24 } });
    await agent.local.tracking.track('items');
    const manifests = (): number => agent.recording.calls.filter((c) => c.method === 'manifest').length;

    const first = await agent.agent.tick();
    expect(first.converged).toBe(true);
    expect(first.tables[0]?.rowsUploaded).toBe(TOTAL);
    expect(manifests()).toBe(0);

    // The next run owes the pass's first slice at once (the whole table: fewer rows than a slice).
    const second = await agent.agent.tick();
    expect(second.converged).toBe(true);
    expect(manifests()).toBeGreaterThan(0);
  });

  it('keeps one request in flight outside a first sync (the replica holds rows)', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await setUp(local);
    const reg = await server.register('acme');
    await using agent = await startRecordingAgent(local, server, reg, {
      batch: { minRows: BATCH_ROWS, maxRows: BATCH_ROWS, firstSyncInFlight: 4 },
    });
    await agent.local.tracking.track('items');
    expect((await agent.agent.tick()).converged).toBe(true);

    await local.query(`update items set name = name || ' (changed)'`);
    const maxInFlight = inFlightOf(agent.recording);
    const tick = await agent.agent.tick({ checkCount: true });
    expect(tick.converged).toBe(true);
    expect(maxInFlight()).toBe(1);
    expect(await dumpRows(server.db, 'public.items')).toEqual(await dumpRows(local, 'public.items'));
  });
});
