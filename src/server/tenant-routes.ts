/**
 * Tenant routes on one table (DESIGN.md, Wire protocol): summary, declare, upload, delete, manifest,
 * recount, resync report. Each checks the API key against both client and database of the path,
 * and writes only under the database's single-agent lease.
 */
import { pipeline, type Readable, Transform, type TransformCallback } from 'node:stream';
import { createGunzip } from 'node:zlib';

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

import { ErrorCode, ProtocolError } from '../shared/errors.js';
import { COPY_CONTENT_TYPE, type DeleteRequest, declareBodySchema, parseTableName, ROUTES, type TableName, typeNameProblem } from '../shared/protocol.js';
import type { AuthGate } from './auth-throttle.js';
import { endMarkerGuard } from './copy-guard.js';
import { RetryLaterError } from './http-errors.js';
import { pathTenant, requireDatabaseKey, requireLease } from './request-auth.js';
import { declarationSchema, deleteSchema, manifestSchema, parse, resyncReportSchema, settleSchema } from './request-schemas.js';
import type { ServerMetrics } from './server-metrics.js';
import type { Tenant, TenantStore } from './tenant-store.js';
import type { UploadAdmission } from './upload-admission.js';

export interface TenantRouteOptions {
  store: TenantStore;
  authenticated: AuthGate;
  metrics: ServerMetrics;
  maxBodyBytes: number;
  maxConcurrentRequests: number;
  leaseSeconds: number;
  /**
   * Load shedding: true while the server is over capacity (start-server.ts: too many requests wait
   * for a database connection). A tenant request then answers 503 with Retry-After before it
   * touches the database, instead of queueing into a connect timeout and a 500. Returns the
   * seconds to wait, or null when a request may go on.
   */
  overloaded?: (() => number | null) | undefined;
  /** Uploads with rows wait here for their turn to load (upload-admission.ts; docs/scaling.md, Fan-in). */
  uploads?: UploadAdmission | undefined;
}

interface TenantParams {
  clientId: string;
  databaseId: string;
  table: string;
}

/** Counts body bytes and fails with 413 past the limit (applied after decompression too). */
function byteLimit(limit: number, onBytes?: (n: number) => void): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      seen += chunk.length;
      onBytes?.(chunk.length);
      if (seen > limit) cb(new ProtocolError(ErrorCode.PAYLOAD_TOO_LARGE, 413, `body larger than ${limit} bytes`));
      else cb(null, chunk);
    },
  });
}

export function registerTenantRoutes(app: FastifyInstance, options: TenantRouteOptions): void {
  const { store, metrics } = options;

  // Quota: requests in progress per tenant. A slot is freed once the answer is sent or the client
  // went away (each hook may fire; the release runs once).
  const inFlight = new Map<string, number>();
  const releases = new WeakMap<FastifyRequest, () => void>();
  const takeSlot = (req: FastifyRequest, tenant: Tenant): void => {
    const n = inFlight.get(tenant.databaseId) ?? 0;
    if (n >= options.maxConcurrentRequests)
      throw new RetryLaterError(
        ErrorCode.REQUEST_INVALID,
        429,
        `quota tenantMaxConcurrentRequests: at most ${options.maxConcurrentRequests} requests of this database at once`,
        1,
      );
    inFlight.set(tenant.databaseId, n + 1);
    releases.set(req, () => {
      const left = (inFlight.get(tenant.databaseId) ?? 1) - 1;
      if (left > 0) inFlight.set(tenant.databaseId, left);
      else inFlight.delete(tenant.databaseId);
    });
  };
  const release = async (req: FastifyRequest): Promise<void> => {
    releases.get(req)?.();
    releases.delete(req);
  };
  app.addHook('onResponse', release);
  app.addHook('onRequestAbort', release);
  const authenticate = async (req: FastifyRequest<{ Params: TenantParams }>): Promise<{ tenant: Tenant; table: TableName }> => {
    const retryAfter = options.overloaded?.() ?? null;
    if (retryAfter !== null) throw new RetryLaterError(ErrorCode.SERVER_OVERLOADED, 503, `the server is over capacity; retry in ${retryAfter} s`, retryAfter);
    const { tenant } = await requireDatabaseKey(
      req,
      options.authenticated,
      (key) => store.authenticate(key),
      () => pathTenant(req.params),
    );
    takeSlot(req, tenant);
    return { tenant, table: parseTableName(req.params.table) };
  };
  const lease = (req: FastifyRequest, tenant: Tenant): Promise<void> => requireLease(req, store, tenant, options.leaseSeconds);
  const tablePath = ROUTES.table;

  app.get<{ Params: TenantParams }>(tablePath, async (req) => {
    const { tenant, table } = await authenticate(req);
    return store.summary(tenant, table);
  });

  app.put<{ Params: TenantParams; Body: unknown }>(tablePath, async (req) => {
    const { tenant, table } = await authenticate(req);
    await lease(req, tenant);
    refuseUnsafeTypes(req.body);
    const { idleSettle } = parse(declareBodySchema, req.body, 'table declaration');
    return store.declareTable(tenant, table, parse(declarationSchema, req.body, 'table declaration'), idleSettle);
  });

  app.post<{ Params: TenantParams; Querystring: Record<string, string>; Body: unknown }>(
    tablePath,
    async (req: FastifyRequest<{ Params: TenantParams; Querystring: Record<string, string>; Body: unknown }>, reply: FastifyReply) => {
      const { tenant, table } = await authenticate(req);
      await lease(req, tenant);
      if (!req.headers['content-type']?.startsWith(COPY_CONTENT_TYPE))
        throw new ProtocolError(ErrorCode.REQUEST_INVALID, 415, `row data must be ${COPY_CONTENT_TYPE} (COPY text)`);
      const declared = Number(req.headers['content-length']);
      if (Number.isFinite(declared) && declared > options.maxBodyBytes)
        throw new ProtocolError(ErrorCode.PAYLOAD_TOO_LARGE, 413, `body of ${declared} bytes is larger than the ${options.maxBodyBytes} accepted`);
      const q = parse(settleSchema, req.query, 'query');
      const encoding = req.headers['content-encoding'] ?? 'identity';
      if (encoding !== 'gzip' && encoding !== 'identity') throw new ProtocolError(ErrorCode.REQUEST_INVALID, 415, 'content-encoding must be gzip or identity');
      // Rows load only with a slot (a settle with an empty body is one statement, and a small
      // body a few rows: they need none); the wait holds no database connection, and the body
      // stays unread in the socket meanwhile.
      const release = declared === 0 ? undefined : await options.uploads?.enter(declared);
      const raw = req.body as Readable;
      const counted = byteLimit(options.maxBodyBytes, (n) => metrics.payloadBytes.inc(n));
      // The request stream is piped, not pipelined: a failure further down (COPY refused, the
      // database gone) must not destroy the client's socket before it gets its answer. A failure of
      // the request itself (the client went away) is forwarded down the chain to the store.
      raw.on('error', (e) => counted.destroy(e));
      // A client that resets mid-body does not always make the request emit 'error', only 'close':
      // without this, the half-fed COPY would wait for the rest forever, holding its connection
      // and transaction (found by the fault-injection test).
      const clientGone = (): void => {
        if (!raw.readableEnded) counted.destroy(Object.assign(new Error('the client went away mid-body'), { code: 'ECONNRESET' }));
      };
      // It may have gone already, while the key and the lease were checked.
      if (raw.destroyed) clientGone();
      else raw.on('close', clientGone);
      raw.pipe(counted);
      // pipeline() forwards a failure anywhere in the rest of the chain to its last stream, which the store reads.
      const guard = endMarkerGuard();
      if (encoding === 'gzip') {
        const gunzip = createGunzip();
        // Attached before pipeline() attaches its own: the store then sees a 400, not zlib's error.
        gunzip.once('error', (e) =>
          guard.destroy(new ProtocolError(ErrorCode.REQUEST_INVALID, 400, `the body is not valid gzip (Content-Encoding: gzip): ${e.message}`)),
        );
        pipeline(counted, gunzip, byteLimit(options.maxBodyBytes), guard, () => {});
      } else pipeline(counted, guard, () => {});
      const stream = guard;
      const settle =
        q.settledVersion !== undefined
          ? { settledVersion: q.settledVersion, settledXmax: q.settledXmax ?? q.settledVersion, settledXip: q.settledXip ? q.settledXip.split(',') : [] }
          : undefined;
      const result = await store
        .upload(tenant, table, stream, {
          ...(settle ? { settle } : {}),
          ...(q.maxModified ? { maxModified: q.maxModified } : {}),
          insertOnly: q.insertOnly === 'true',
          emptyBody: declared === 0,
          ...(encoding === 'identity' && Number.isFinite(declared) ? { bodyBytes: declared } : {}),
        })
        .finally(() => release?.());
      metrics.rowsIngested.inc(result.rowsInserted + result.rowsUpdated);
      metrics.staleRows.inc(result.rowsReceived - result.rowsInserted - result.rowsUpdated);
      return reply.send(result);
    },
  );

  app.delete<{ Params: TenantParams; Body: unknown }>(tablePath, async (req) => {
    const { tenant, table } = await authenticate(req);
    await lease(req, tenant);
    const request: DeleteRequest = parse(deleteSchema, req.body, 'delete request');
    const result = await store.deleteRows(tenant, table, request);
    const reason = 'keys' in request ? 'keys' : 'aboveVersion' in request ? 'above_version' : 'all';
    metrics.rowsDeleted.inc({ reason }, result.rowsDeleted);
    return result;
  });

  app.post<{ Params: TenantParams; Body: unknown }>(ROUTES.tableManifest, async (req) => {
    const { tenant, table } = await authenticate(req);
    // zod's optional properties admit undefined; ManifestRequest's (exactOptionalPropertyTypes) do not.
    const request = parse(manifestSchema, req.body, 'manifest request');
    return store.manifest(tenant, table, request);
  });

  app.post<{ Params: TenantParams }>(ROUTES.tableRecount, async (req) => {
    const { tenant, table } = await authenticate(req);
    await lease(req, tenant);
    return store.recount(tenant, table);
  });

  app.put<{ Params: TenantParams; Body: unknown }>(ROUTES.tableResync, async (req) => {
    const { tenant, table } = await authenticate(req);
    await lease(req, tenant);
    const report = parse(resyncReportSchema, req.body, 'resync report');
    return store.reportResync(
      tenant,
      table,
      report.error === undefined ? { status: report.status, progress: report.progress, rowsRepaired: report.rowsRepaired } : { ...report, error: report.error },
    );
  });
}

/** A column type that could never reach DDL is refused with the code that names the problem. */
function refuseUnsafeTypes(body: unknown): void {
  const columns = (body as { columns?: unknown } | null)?.columns;
  if (!Array.isArray(columns)) return;
  for (const c of columns as { name?: unknown; type?: unknown }[]) {
    const problem = typeof c?.type === 'string' ? typeNameProblem(c.type) : null;
    if (problem) throw new ProtocolError(ErrorCode.COLUMN_TYPE_UNSUPPORTED, 400, `column ${String(c.name)}: type ${JSON.stringify(c.type)} ${problem}`);
  }
}
