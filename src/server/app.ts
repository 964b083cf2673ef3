/**
 * The REST API (DESIGN.md, Wire protocol): tenant routes authenticated by API key (tenant-routes.ts),
 * admin routes by the admin key (admin-routes.ts), health and metrics. One error mapper answers
 * `{ error: { code, message, requestId } }`; 5xx bodies carry no stack, SQL or cause.
 */
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';

import { ErrorCode, ProtocolError, TidemarkError, toError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { classifyPgError, sqlstateOf } from '../shared/pg.js';
import { COPY_CONTENT_TYPE, type ErrorBody } from '../shared/protocol.js';
import { registerFleetRoutes } from './admin-fleet-routes.js';
import { registerKeyRoutes } from './admin-key-routes.js';
import { registerAdminRoutes } from './admin-routes.js';
import { type AuthThrottle, authGate } from './auth-throttle.js';
import { registerBundleRoutes } from './bundle-routes.js';
import type { BundleStore } from './bundle-store.js';
import { registerConsoleRoutes } from './console-routes.js';
import type { FleetStore } from './fleet-store.js';
import { RetryLaterError } from './http-errors.js';
import type { KeyStore } from './key-store.js';
import { registerMetricsRoute } from './metrics-route.js';
import type { ServerMetrics } from './server-metrics.js';
import { registerTenantRoutes } from './tenant-routes.js';
import type { TenantStore } from './tenant-store.js';
import type { UploadAdmission } from './upload-admission.js';

export interface AppOptions {
  store: TenantStore;
  authThrottle: AuthThrottle;
  metrics: ServerMetrics;
  adminKey: string;
  maxBodyBytes: number;
  /** Quota: requests one tenant may have in progress at once. */
  maxConcurrentRequests: number;
  leaseSeconds: number;
  log: Logger;
  ready: () => Promise<void>;
  /** Whether this listener serves /metrics (false when it has its own listener). */
  metricsHere: boolean;
  metricsBearerToken?: string | undefined;
  /** Load shedding of tenant requests (tenant-routes.ts): the seconds to wait while over capacity, else null. */
  overloaded?: (() => number | null) | undefined;
  /** Admission control of uploads with rows (upload-admission.ts); without it, every upload loads at once. */
  uploads?: UploadAdmission | undefined;
  /** True for the pool's connect timeout (start-server.ts): over capacity, answered 503 with Retry-After. */
  poolTimedOut?: ((err: unknown) => boolean) | undefined;
  /** Offline sites' bundle imports (bundle-routes.ts); without it, the bundle routes are absent. */
  bundles?: BundleStore;
  /** Agents' run reports and the admin fleet views (admin-fleet-routes.ts); without it, those routes are absent. */
  fleet?: { store: FleetStore; silentAfterSeconds: number; now: () => number };
  /** Enrollment tokens, key rotation, revocation, deregistration (admin-key-routes.ts); without it, those routes are absent. */
  keys?: KeyStore;
}

const MAX_JSON_BYTES = 16 * 1024 * 1024;
/** What a 503 answer's Retry-After says while the database is unreachable. */
const RETRY_AFTER_SECONDS = 5;

/** The client closed its connection before the answer (a reset mid-upload, a killed agent). */
function clientGone(req: FastifyRequest): boolean {
  // A request read to its end is destroyed too (autoDestroy): only an incomplete one, or a dead socket, means the client left.
  return req.raw.socket?.destroyed === true || (req.raw.destroyed && !req.raw.complete);
}

/**
 * An error is the database's unavailability when its SQLSTATE says so (connection failures,
 * terminated sessions, a starting server), or when the database does not answer a probe right now:
 * a connection that died mid-request reports no SQLSTATE.
 */
async function databaseDown(err: unknown, probe: () => Promise<void>): Promise<boolean> {
  if (err instanceof TidemarkError) return err.code === ErrorCode.DB_UNAVAILABLE;
  if (classifyPgError(err).code === ErrorCode.DB_UNAVAILABLE) return true;
  try {
    await probe();
    return false;
  } catch {
    return true;
  }
}

export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const { metrics, log } = options;
  const app = Fastify({
    logger: false,
    bodyLimit: MAX_JSON_BYTES,
    // Table names arrive percent-encoded in one path segment and may be long.
    routerOptions: { maxParamLength: 1024 },
    requestIdHeader: 'x-request-id',
  });

  // Row data is streamed straight into COPY: hand the raw request stream to the handler.
  app.addContentTypeParser(COPY_CONTENT_TYPE, (_req, payload, done) => done(null, payload));

  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    metrics.requestDuration.observe({ route, method: req.method, status_class: `${Math.floor(reply.statusCode / 100)}xx` }, reply.elapsedTime / 1000);
  });

  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send({ error: { code: ErrorCode.NOT_FOUND, message: `no route ${req.method} ${req.url.split('?')[0]}`, requestId: req.id } });
  });

  app.setErrorHandler(async (err: unknown, req, reply) => {
    let status = 500;
    let code: string = ErrorCode.INTERNAL;
    let message = 'internal error; see the server log';
    const fe = err as { statusCode?: unknown; code?: unknown; message?: unknown };
    if (err instanceof ProtocolError) {
      if (err instanceof RetryLaterError) void reply.header('retry-after', String(err.retryAfterSeconds));
      status = err.status;
      code = err.code;
      message = err.message;
    } else if (fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      status = 413;
      code = ErrorCode.PAYLOAD_TOO_LARGE;
      message = 'body too large';
    } else if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
      status = fe.statusCode;
      code = ErrorCode.REQUEST_INVALID;
      message = String(fe.message);
    } else if (sqlstateOf(err)?.startsWith('22')) {
      // A data exception raised by a value the request carried (a key invalid for its column's type,
      // a version beyond bigint, a NUL in a name): the caller's mistake.
      status = 400;
      code = ErrorCode.REQUEST_INVALID;
      message = `a value in the request is invalid: ${toError(err).message}`;
    } else if (options.poolTimedOut?.(err)) {
      // Every connection stayed busy for the pool's whole connect timeout: over capacity, not broken.
      status = 503;
      code = ErrorCode.SERVER_OVERLOADED;
      message = 'the server is over capacity; retry later';
      void reply.header('retry-after', String(RETRY_AFTER_SECONDS));
      log.warn({ requestId: req.id, route: req.routeOptions.url }, 'no database connection within the pool timeout: shed');
    } else if (clientGone(req)) {
      // The client reset or closed the connection mid-request: nobody reads the answer, nothing is wrong here.
      log.info({ requestId: req.id, route: req.routeOptions.url }, 'client went away');
      return reply.code(499).send();
    } else if (await databaseDown(err, options.ready)) {
      // The database restarts or fails over: the request may be repeated as is once it is back.
      status = 503;
      code = ErrorCode.SERVER_UNAVAILABLE;
      message = 'the server cannot reach its database; retry later';
      void reply.header('retry-after', String(RETRY_AFTER_SECONDS));
      log.warn({ err: classifyPgError(err).sqlstate ?? toError(err).message, requestId: req.id, route: req.routeOptions.url }, 'database unavailable');
    }
    if (status >= 500 && status !== 503) log.error({ err: toError(err), requestId: req.id, route: req.routeOptions.url }, 'request failed');
    else if (status < 500) log.info({ code, status, requestId: req.id, route: req.routeOptions.url }, 'request rejected');
    const body: ErrorBody = { error: { code, message, requestId: req.id } };
    return reply.code(status).send(body);
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
  if (options.metricsHere) registerMetricsRoute(app, metrics.registry, options.metricsBearerToken);

  const authenticated = authGate(options.authThrottle, metrics);
  registerAdminRoutes(app, { store: options.store, adminKey: options.adminKey, log, authenticated, ...(options.bundles ? { bundles: options.bundles } : {}) });
  registerTenantRoutes(app, { ...options, authenticated });
  if (options.bundles) registerBundleRoutes(app, { ...options, bundles: options.bundles, authenticated });
  if (options.fleet) registerFleetRoutes(app, { ...options, ...options.fleet, fleet: options.fleet.store, store: options.store, authenticated });
  if (options.keys) registerKeyRoutes(app, { ...options, keys: options.keys, authenticated });
  registerConsoleRoutes(app);
  return app;
}
