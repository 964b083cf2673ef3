/**
 * The REST API (DESIGN.md, Wire protocol): tenant routes authenticated by API key (tenant-routes.ts),
 * admin routes by the admin key (admin-routes.ts), health and metrics. One error mapper answers
 * `{ error: { code, message, requestId } }`; 5xx bodies carry no stack, SQL or cause.
 */
import Fastify, { type FastifyInstance } from 'fastify';

import { ErrorCode, ProtocolError, TidemarkError, toError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { COPY_CONTENT_TYPE, type ErrorBody } from '../shared/protocol.js';
import { registerAdminRoutes } from './admin-routes.js';
import { registerBundleRoutes } from './bundle-routes.js';
import type { BundleStore } from './bundle-store.js';
import type { ServerMetrics } from './server-metrics.js';
import { registerTenantRoutes } from './tenant-routes.js';
import type { TenantStore } from './tenant-store.js';

export interface AppOptions {
  store: TenantStore;
  metrics: ServerMetrics;
  adminKey: string;
  maxBodyBytes: number;
  leaseSeconds: number;
  log: Logger;
  ready: () => Promise<void>;
  /** Offline sites' bundle imports (bundle-routes.ts); without it, the bundle routes are absent. */
  bundles?: BundleStore;
}

const MAX_JSON_BYTES = 16 * 1024 * 1024;

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

  registerAdminRoutes(app, { store: options.store, adminKey: options.adminKey, log });
  registerTenantRoutes(app, options);
  if (options.bundles) registerBundleRoutes(app, { ...options, bundles: options.bundles });
  return app;
}
