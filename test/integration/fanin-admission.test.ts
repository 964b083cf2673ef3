/**
 * Fan-in of first syncs (issue 10, target 5): the server lets at most K uploads with rows load at
 * once; the others wait for a slot without holding a database connection, and one that waited past
 * its bound is answered 503 TM_SERVER_OVERLOADED with Retry-After, having written nothing. The
 * agent sends such a batch again within its run, at the same size. The slot is held by an upload
 * whose body the test sends in two parts, the queue's timer is fired by the test, and every step
 * waits for the admission's events: nothing depends on speed.
 */
import { once } from 'node:events';
import { request } from 'node:http';

import { describe, expect, it } from 'vitest';

import { HttpRemote } from '../../src/agent/http-remote.js';
import { RemoteError } from '../../src/agent/remote.js';
import { type QueueTimer, UploadAdmission } from '../../src/server/upload-admission.js';
import { ErrorCode } from '../../src/shared/errors.js';
import { COPY_CONTENT_TYPE, HEADER_AGENT_ID, type RegisterResult, type TableDeclaration, tablePath } from '../../src/shared/protocol.js';
import { createDatabase, dumpRows, startRecordingAgent, startTestServer, type TestServer } from '../support/fixtures.js';

const TABLE = { schema: 'public', name: 'items' };
const DECLARATION: TableDeclaration = {
  columns: [
    { name: 'tidemark_version', type: 'bigint', notNull: true },
    { name: 'id', type: 'integer', notNull: true },
    { name: 'name', type: 'text', notNull: true },
  ],
  keyColumns: ['id'],
};
/** Generous: a slow machine must not decide an outcome. */
const TIMEOUT_MS = 600_000;

function rows(from: number, to: number): string {
  let text = '';
  for (let i = from; i <= to; i++) text += `${100 + i}\t${i}\titem ${i}\n`;
  return text;
}

/** A timer the test fires by hand. */
function manualTimer(): { timer: QueueTimer; fireLast: () => void } {
  const armed: (() => void)[] = [];
  return {
    timer: (_ms, fire) => {
      armed.push(fire);
      return () => {};
    },
    fireLast: () => armed[armed.length - 1]?.(),
  };
}

function remoteOf(server: TestServer, reg: RegisterResult, agentId: string): HttpRemote {
  return new HttpRemote({ serverUrl: server.url, clientId: reg.clientId, databaseId: reg.databaseId, apiKey: reg.apiKey, agentId, gzip: false });
}

/**
 * Starts an insert-only upload of `first`, its body left open (chunked): once admitted, it holds
 * its slot until `finish` sends the rest.
 */
function openUpload(
  server: TestServer,
  reg: RegisterResult,
  agentId: string,
  first: string,
): { finish(rest: string): Promise<{ status: number; body: string }> } {
  const req = request(`${server.url}${tablePath(reg.clientId, reg.databaseId, TABLE)}?insertOnly=true`, {
    method: 'POST',
    headers: { authorization: `Bearer ${reg.apiKey}`, [HEADER_AGENT_ID]: agentId, 'content-type': COPY_CONTENT_TYPE },
  });
  const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
    req.on('response', (res) => {
      let body = '';
      res.on('data', (c: Buffer) => {
        body += c.toString();
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
  });
  req.write(first);
  return {
    finish: (rest) => {
      req.end(rest);
      return answer;
    },
  };
}

/** Tenant A's upload holds the only slot (admitted, its body left open) until its `finish`. */
async function holdTheSlot(admission: UploadAdmission, server: TestServer, a: RegisterResult): Promise<ReturnType<typeof openUpload>> {
  const admitted = once(admission, 'admitted');
  const holding = openUpload(server, a, 'agent-a', rows(1, 50));
  await admitted;
  return holding;
}

/** Two tenants, acme (A) and globex (B), each with a remote that has declared the table (the caller closes them). */
async function twoTenants(server: TestServer): Promise<{ a: RegisterResult; b: RegisterResult; remoteA: HttpRemote; remoteB: HttpRemote }> {
  const a = await server.register('acme');
  const b = await server.register('globex');
  const remoteA = remoteOf(server, a, 'agent-a');
  const remoteB = remoteOf(server, b, 'agent-b');
  try {
    await remoteA.declare(TABLE, DECLARATION);
    await remoteB.declare(TABLE, DECLARATION);
  } catch (e) {
    remoteA.close();
    remoteB.close();
    throw e;
  }
  return { a, b, remoteA, remoteB };
}

async function tenantRows(server: TestServer, reg: RegisterResult): Promise<number> {
  const [r] = await server.db.query<{ n: number }>(`select count(*)::int as n from public.items where tidemark_database_id = $1::uuid`, [reg.databaseId]);
  return r?.n ?? -1;
}

describe('fan-in: admission control of uploads', () => {
  it('with one slot, a second upload waits for the first to finish, then loads', async () => {
    const { timer } = manualTimer();
    const admission = new UploadAdmission({ maxConcurrent: 1, maxWaitMs: 20_000, retryAfterSeconds: 2, timer });
    await using server = await startTestServer({}, { uploadAdmission: admission });
    const { a, b, remoteA, remoteB } = await twoTenants(server);
    try {
      const holding = await holdTheSlot(admission, server, a);
      const queued = once(admission, 'queued');
      const second = remoteB.upload(TABLE, Buffer.from(rows(1, 30)), { insertOnly: true, timeoutMs: TIMEOUT_MS });
      await queued;
      expect(admission.stats()).toEqual({ active: 1, waiting: 1 });
      // B waits without a database connection: only A's COPY is in progress.
      expect(await tenantRows(server, b)).toBe(0);

      const first = await holding.finish(rows(51, 100));
      expect(first.status).toBe(200);
      expect((await second).rowsInserted).toBe(30);
      expect(await tenantRows(server, a)).toBe(100);
      expect(await tenantRows(server, b)).toBe(30);
      expect(admission.stats()).toEqual({ active: 0, waiting: 0 });
    } finally {
      remoteA.close();
      remoteB.close();
    }
  });

  it('an upload that waited past its bound is answered 503 with Retry-After, which the agent reads as overloaded, and nothing of it is written', async () => {
    const { timer, fireLast } = manualTimer();
    const admission = new UploadAdmission({ maxConcurrent: 1, maxWaitMs: 20_000, retryAfterSeconds: 2, timer });
    await using server = await startTestServer({}, { uploadAdmission: admission });
    const { a, b, remoteA, remoteB } = await twoTenants(server);
    try {
      const holding = await holdTheSlot(admission, server, a);
      const queued = once(admission, 'queued');
      // A body larger than the sockets' buffers (~1.5 MB): the 503 is sent before any of it is read,
      // and must reach the agent as an answer, not as a connection reset.
      const second = remoteB.upload(TABLE, Buffer.from(rows(1, 60_000)), { insertOnly: true, timeoutMs: TIMEOUT_MS }).catch((e: unknown) => e);
      await queued;
      fireLast();
      const err = await second;
      expect(err).toBeInstanceOf(RemoteError);
      expect(err).toMatchObject({ errorClass: 'overloaded', code: ErrorCode.SERVER_OVERLOADED, retryAfterSeconds: 2 });

      expect((await holding.finish(rows(51, 100))).status).toBe(200);
      expect(await tenantRows(server, a)).toBe(100);
      expect(await tenantRows(server, b)).toBe(0);
      expect((await remoteB.summary(TABLE)).rowCount).toBe(0);
      expect(admission.stats()).toEqual({ active: 0, waiting: 0 });
    } finally {
      remoteA.close();
      remoteB.close();
    }
  });

  it('the agent sends a shed first-sync batch again within its run, at the same size, quarantining nothing', async () => {
    const { timer, fireLast } = manualTimer();
    // Retry-After 0: the agent's wait is not the test's business here.
    const admission = new UploadAdmission({ maxConcurrent: 1, maxWaitMs: 20_000, retryAfterSeconds: 0, timer });
    await using local = await createDatabase('local');
    await using server = await startTestServer({}, { uploadAdmission: admission });
    await local.query(`create table items (id int primary key, name text not null)`);
    await local.query(`insert into items select i, 'item ' || i from generate_series(1, 100) i`);
    const a = await server.register('acme');
    const b = await server.register('globex');
    const remoteA = remoteOf(server, a, 'agent-a');
    try {
      await remoteA.declare(TABLE, DECLARATION);
      await using agent = await startRecordingAgent(local, server, b);
      await agent.local.tracking.track('items');
      const holding = await holdTheSlot(admission, server, a);
      // The agent's first batch queues behind A and is shed; its second try queues again, and A finishes.
      let queuedTimes = 0;
      let finished: Promise<{ status: number; body: string }> | undefined;
      admission.on('queued', () => {
        queuedTimes++;
        if (queuedTimes === 1) fireLast();
        else if (queuedTimes === 2) finished = holding.finish(rows(51, 100));
      });
      const tick = await agent.agent.tick();
      expect(tick.tables[0]?.error).toBeUndefined();
      expect(tick.converged).toBe(true);
      expect(queuedTimes).toBe(2);
      expect((await finished)?.status).toBe(200);
      expect(agent.recording.uploads().map((c) => c.rows)).toEqual([100, 100]);
      expect(await agent.local.quarantine.count(TABLE)).toBe(0);
      expect(await dumpRows(server.db, 'public.items', { where: `tidemark_client_id = 'globex'` })).toEqual(await dumpRows(local, 'public.items'));
    } finally {
      remoteA.close();
    }
  });
});
