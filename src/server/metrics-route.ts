/**
 * GET /metrics, on the API listener or on its own (server config `metricsListen`), optionally
 * behind a bearer token (`metricsBearerToken`) compared in constant time.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

import Fastify, { type FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';

const sha256 = (s: string): Buffer => createHash('sha256').update(s).digest();

export function registerMetricsRoute(app: FastifyInstance, registry: Registry, bearerToken: string | undefined): void {
  const tokenHash = bearerToken === undefined ? undefined : sha256(bearerToken);
  app.get('/metrics', async (req, reply) => {
    if (tokenHash) {
      const given = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
      if (!given || !timingSafeEqual(sha256(given), tokenHash)) return reply.code(401).header('www-authenticate', 'Bearer').send({ status: 'unauthorized' });
    }
    reply.header('content-type', registry.contentType);
    return registry.metrics();
  });
}

/** A listener serving only /metrics (and /healthz). */
export function buildMetricsApp(registry: Registry, bearerToken: string | undefined): FastifyInstance {
  const app = Fastify({ logger: false });
  app.get('/healthz', async () => ({ status: 'ok' }));
  registerMetricsRoute(app, registry, bearerToken);
  return app;
}
