/**
 * The admin console: a static page at /admin/ (src/server/console/, copied to dist/server/console/
 * by `npm run build`) that reads and drives the admin JSON API from the browser. The page holds no
 * data, so it is served without the admin key; every figure it shows comes from the admin API,
 * which wants the key (the page sends it as `Authorization: Bearer`) or a reverse proxy that adds it.
 * Every URL in the page is relative, so it works behind a reverse proxy at a sub-path.
 */
import { readFile } from 'node:fs/promises';

import type { FastifyInstance, FastifyReply } from 'fastify';

import { ErrorCode, ProtocolError } from '../shared/errors.js';

/** The files of the page, and their content types: nothing else under /admin/ is served. */
const ASSETS: Readonly<Record<string, string>> = {
  'index.html': 'text/html; charset=utf-8',
  'console.js': 'text/javascript; charset=utf-8',
  'console.css': 'text/css; charset=utf-8',
};

const ASSET_DIR = new URL('./console/', import.meta.url);

/**
 * The page loads only its own script and style and talks only to its own origin; it cannot be
 * framed (clickjacking of the resync and register buttons).
 */
const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  // The files change with the server's version: revalidate rather than run an old script against a new API.
  'cache-control': 'no-cache',
};

export function registerConsoleRoutes(app: FastifyInstance): void {
  const cache = new Map<string, Buffer>();
  const asset = async (name: string): Promise<Buffer> => {
    const cached = cache.get(name);
    if (cached) return cached;
    const body = await readFile(new URL(name, ASSET_DIR));
    cache.set(name, body);
    return body;
  };

  // Relative, so that behind a proxy at /tidemark/ the browser goes to /tidemark/admin/.
  app.get('/admin', async (_req, reply) => reply.code(301).header('location', 'admin/').send());
  const send = async (name: string, reply: FastifyReply): Promise<FastifyReply> => {
    const type = Object.hasOwn(ASSETS, name) ? ASSETS[name] : undefined;
    if (!type) throw new ProtocolError(ErrorCode.NOT_FOUND, 404, `no console file ${name}`);
    return reply.headers({ ...SECURITY_HEADERS, 'content-type': type }).send(await asset(name));
  };
  app.get('/admin/', async (_req, reply) => send('index.html', reply));
  app.get<{ Params: { asset: string } }>('/admin/:asset', async (req, reply) => send(req.params.asset, reply));
}
