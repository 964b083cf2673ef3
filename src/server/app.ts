/**
 * The REST API (DESIGN.md, Wire protocol): tenant routes authenticated by API key, admin routes by
 * the admin key, health and metrics. Handlers validate input, resolve the tenant and call the store.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { pipeline, type Readable, Transform, type TransformCallback } from 'node:stream';
import { createGunzip } from 'node:zlib';

import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { z } from 'zod';

import { ErrorCode, ProtocolError, TidemarkError, toError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import {
  CLIENT_ID_PATTERN,
  COPY_CONTENT_TYPE,
  type DeleteRequest,
  type ErrorBody,
  HEADER_AGENT_ID,
  MAX_BUCKET_BITS,
  type ManifestRequest,
  parseTableName,
  type TableName,
  UUID_PATTERN,
} from '../shared/protocol.js';
import type { ServerMetrics } from './server-metrics.js';
import type { PgTenantStore, Tenant } from './tenant-store.js';

export interface AppOptions {
  store: PgTenantStore;
  metrics: ServerMetrics;
  adminKey: string;
  maxBodyBytes: number;
  leaseSeconds: number;
  log: Logger;
  ready: () => Promise<void>;
}

const MAX_JSON_BYTES = 16 * 1024 * 1024;
const version = z.string().regex(/^\d{1,20}$/, 'a decimal version');
const keyText = z.array(z.string()).min(1).max(32);
const bound = z.object({ version, key: keyText.nullable() });
const range = z.object({ lower: bound.nullable(), lowerExclusive: z.boolean().optional(), upper: bound.nullable() });
const manifestSchema = z
  .object({
    mode: z.enum(['count', 'hash']),
    range,
    level: z.enum(['summary', 'buckets', 'rows']),
    hashKind: z.enum(['record', 'text']).optional(),
    bucketBits: z.number().int().min(0).max(MAX_BUCKET_BITS).optional(),
    within: z
      .object({
        bits: z.number().int().min(0).max(MAX_BUCKET_BITS),
        buckets: z.array(z.number().int().min(0)).max(2 ** MAX_BUCKET_BITS),
      })
      .optional(),
    buckets: z
      .array(z.number().int().min(0))
      .max(2 ** MAX_BUCKET_BITS)
      .optional(),
  })
  .refine((m) => m.level === 'summary' || m.bucketBits !== undefined, 'bucketBits is required for levels buckets and rows')
  .refine((m) => m.level !== 'rows' || (m.buckets ?? []).every((b) => b < 2 ** (m.bucketBits ?? 0)), 'buckets must be below 2^bucketBits');
const deleteSchema = z.union([
  z.object({ keys: z.array(z.object({ key: keyText, version })).max(1_000_000) }),
  z.object({ aboveVersion: version }),
  z.object({ all: z.literal(true) }),
]);
const columnSchema = z.object({ name: z.string(), type: z.string(), notNull: z.boolean() });
const declarationSchema = z.object({ columns: z.array(columnSchema).min(1).max(1600), keyColumns: z.array(z.string()).min(1) });
const resyncReportSchema = z.object({
  status: z.enum(['running', 'done', 'failed']),
  progress: z.number().min(0).max(1),
  rowsRepaired: z.number().int().min(0),
  error: z.string().max(4000).optional(),
});
const settleSchema = z.object({
  settledVersion: version.optional(),
  settledXmax: version.optional(),
  settledXip: z
    .string()
    .regex(/^(\d{1,20}(,\d{1,20})*)?$/)
    .optional(),
  maxModified: z.iso.datetime({ offset: true }).optional(),
  insertOnly: z.enum(['true', 'false']).optional(),
});

function parse<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const r = schema.safeParse(value);
  if (!r.success) {
    const issues = r.error.issues.map((i) => `${i.path.join('.') || what}: ${i.message}`).join('; ');
    throw new ProtocolError(ErrorCode.REQUEST_INVALID, 400, `invalid ${what}: ${issues}`);
  }
  return r.data;
}

interface TenantParams {
  clientId: string;
  databaseId: string;
  table: string;
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
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

export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const { store, metrics, log } = options;
  const app = Fastify({
    logger: false,
    bodyLimit: MAX_JSON_BYTES,
    // Table names arrive percent-encoded in one path segment and may be long.
    routerOptions: { maxParamLength: 1024 },
    requestIdHeader: 'x-request-id',
  });
  const adminKeyHash = sha256(options.adminKey);

  // Row data is streamed straight into COPY: hand the raw request stream to the handler.
  app.addContentTypeParser(COPY_CONTENT_TYPE, (_req, payload, done) => done(null, payload));

  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    metrics.requestDuration.observe({ route, method: req.method, status_class: `${Math.floor(reply.statusCode / 100)}xx` }, reply.elapsedTime / 1000);
  });

  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send({ error: { code: ErrorCode.NOT_FOUND, message: `no route ${req.method} ${req.url.split('?')[0]}`, requestId: req.id } });
  });

  app.setErrorHandler((err: unknown, req, reply) => {
    let status = 500;
    let code: string = ErrorCode.INTERNAL;
    let message = 'internal error; see the server log';
    if (err instanceof ProtocolError) {
      status = err.status;
      code = err.code;
      message = err.message;
    } else {
      const fe = err as { statusCode?: unknown; code?: unknown; message?: unknown };
      if (fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
        status = 413;
        code = ErrorCode.PAYLOAD_TOO_LARGE;
        message = 'body too large';
      } else if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
        status = fe.statusCode;
        code = ErrorCode.REQUEST_INVALID;
        message = String(fe.message);
      } else if (err instanceof TidemarkError && err.code === ErrorCode.DB_UNAVAILABLE) {
        status = 503;
        code = err.code;
        message = 'database unavailable';
      }
    }
    if (status >= 500) log.error({ err: toError(err), requestId: req.id, route: req.routeOptions.url }, 'request failed');
    else log.debug({ code, requestId: req.id }, 'request rejected');
    const body: ErrorBody = { error: { code, message, requestId: req.id } };
    void reply.code(status).send(body);
  });

  // --- health and metrics ------------------------------------------------------------------
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    try {
      await options.ready();
      return { status: 'ready' };
    } catch {
      return reply.code(503).send({ status: 'unavailable' });
    }
  });
  app.get('/metrics', async (_req, reply) => {
    reply.header('content-type', metrics.registry.contentType);
    return metrics.registry.metrics();
  });

  // --- admin -------------------------------------------------------------------------------
  const requireAdmin = async (req: FastifyRequest): Promise<void> => {
    const given = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    if (!given || !timingSafeEqual(sha256(given), adminKeyHash))
      throw new ProtocolError(ErrorCode.AUTH_UNAUTHENTICATED, 401, 'admin key required (Authorization: Bearer <admin key>)');
  };
  const clientIdOf = (s: string): string => parse(z.string().regex(CLIENT_ID_PATTERN, 'lower-case letters, digits, - and _'), s, 'clientId');
  const databaseIdOf = (s: string): string => parse(z.string().regex(UUID_PATTERN, 'a UUID'), s, 'databaseId').toLowerCase();

  app.post<{ Params: { clientId: string }; Body: unknown }>('/v1/admin/customers/:clientId/databases', { preHandler: requireAdmin }, async (req, reply) => {
    const clientId = clientIdOf(req.params.clientId);
    const { name } = parse(z.object({ name: z.string().min(1).max(200) }), req.body, 'body');
    const result = await store.registerDatabase(clientId, name);
    log.info({ clientId, databaseId: result.databaseId }, 'database registered');
    return reply.code(201).send(result);
  });

  app.post<{ Params: { clientId: string; databaseId: string }; Body: unknown }>(
    '/v1/admin/customers/:clientId/databases/:databaseId/resync',
    { preHandler: requireAdmin },
    async (req, reply) => {
      const clientId = clientIdOf(req.params.clientId);
      const databaseId = databaseIdOf(req.params.databaseId);
      const body = parse(z.object({ tables: z.array(z.string()).optional() }).optional(), req.body ?? undefined, 'body');
      const tables = body?.tables ? body.tables.map((t) => parseTableName(t)) : null;
      const flagged = await store.requestResync(clientId, databaseId, tables);
      if (flagged.length === 0) throw new ProtocolError(ErrorCode.NOT_FOUND, 404, 'no matching declared table for this database');
      log.info({ clientId, databaseId, tables: flagged }, 'resync requested');
      return reply.code(202).send({ tables: flagged });
    },
  );

  app.get('/v1/admin/tenants', { preHandler: requireAdmin }, async () => ({ tenants: await store.listTenants() }));
  app.get<{ Params: { clientId: string; databaseId: string } }>(
    '/v1/admin/customers/:clientId/databases/:databaseId',
    { preHandler: requireAdmin },
    async (req) => {
      const [tenant] = await store.listTenants(clientIdOf(req.params.clientId), databaseIdOf(req.params.databaseId));
      if (!tenant) throw new ProtocolError(ErrorCode.NOT_FOUND, 404, 'no such client/database');
      return tenant;
    },
  );

  // --- tenant routes -----------------------------------------------------------------------
  const authenticate = async (req: FastifyRequest<{ Params: TenantParams }>): Promise<{ tenant: Tenant; table: TableName }> => {
    const given = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    if (!given) throw new ProtocolError(ErrorCode.AUTH_UNAUTHENTICATED, 401, 'API key required (Authorization: Bearer <key>)');
    const tenant = await store.authenticate(given);
    if (!tenant) throw new ProtocolError(ErrorCode.AUTH_UNAUTHENTICATED, 401, 'unknown API key');
    if (tenant.clientId !== req.params.clientId || tenant.databaseId !== req.params.databaseId.toLowerCase())
      throw new ProtocolError(ErrorCode.AUTH_FORBIDDEN, 403, 'this API key is bound to another client or database');
    return { tenant, table: parseTableName(req.params.table) };
  };
  const lease = async (req: FastifyRequest, tenant: Tenant): Promise<void> => {
    const agentId = req.headers[HEADER_AGENT_ID];
    if (typeof agentId !== 'string' || agentId.length === 0 || agentId.length > 200)
      throw new ProtocolError(ErrorCode.REQUEST_INVALID, 400, `header ${HEADER_AGENT_ID} required`);
    const heldUntil = await store.acquireLease(tenant, agentId, options.leaseSeconds);
    if (heldUntil) throw new ProtocolError(ErrorCode.LEASE_HELD, 409, `another agent holds this database's lease until ${heldUntil.toISOString()}`);
  };
  const tablePath = '/v1/customers/:clientId/databases/:databaseId/tables/:table';

  app.get<{ Params: TenantParams }>(tablePath, async (req) => {
    const { tenant, table } = await authenticate(req);
    return store.summary(tenant, table);
  });

  app.put<{ Params: TenantParams; Body: unknown }>(tablePath, async (req) => {
    const { tenant, table } = await authenticate(req);
    await lease(req, tenant);
    return store.declareTable(tenant, table, parse(declarationSchema, req.body, 'table declaration'));
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
      const raw = req.body as Readable;
      const counted = byteLimit(options.maxBodyBytes, (n) => metrics.payloadBytes.inc(n));
      // pipeline() forwards a failure anywhere in the chain to its last stream, which the store reads.
      const stream = encoding === 'gzip' ? pipeline(raw, counted, createGunzip(), byteLimit(options.maxBodyBytes), () => {}) : pipeline(raw, counted, () => {});
      const settle =
        q.settledVersion !== undefined
          ? { settledVersion: q.settledVersion, settledXmax: q.settledXmax ?? q.settledVersion, settledXip: q.settledXip ? q.settledXip.split(',') : [] }
          : undefined;
      const result = await store.upload(tenant, table, stream, {
        ...(settle ? { settle } : {}),
        ...(q.maxModified ? { maxModified: q.maxModified } : {}),
        insertOnly: q.insertOnly === 'true',
      });
      metrics.rowsIngested.inc(result.rowsReceived);
      return reply.send(result);
    },
  );

  app.delete<{ Params: TenantParams; Body: unknown }>(tablePath, async (req) => {
    const { tenant, table } = await authenticate(req);
    await lease(req, tenant);
    const request = parse(deleteSchema, req.body, 'delete request') as DeleteRequest;
    const result = await store.deleteRows(tenant, table, request);
    const reason = 'keys' in request ? 'keys' : 'aboveVersion' in request ? 'above_version' : 'all';
    metrics.rowsDeleted.inc({ reason }, result.rowsDeleted);
    return result;
  });

  app.post<{ Params: TenantParams; Body: unknown }>(`${tablePath}/manifest`, async (req) => {
    const { tenant, table } = await authenticate(req);
    return store.manifest(tenant, table, parse(manifestSchema, req.body, 'manifest request') as ManifestRequest);
  });

  app.post<{ Params: TenantParams }>(`${tablePath}/recount`, async (req) => {
    const { tenant, table } = await authenticate(req);
    await lease(req, tenant);
    return store.recount(tenant, table);
  });

  app.put<{ Params: TenantParams; Body: unknown }>(`${tablePath}/resync`, async (req) => {
    const { tenant, table } = await authenticate(req);
    await lease(req, tenant);
    const report = parse(resyncReportSchema, req.body, 'resync report');
    return store.reportResync(
      tenant,
      table,
      report.error === undefined ? { status: report.status, progress: report.progress, rowsRepaired: report.rowsRepaired } : { ...report, error: report.error },
    );
  });

  return app;
}
