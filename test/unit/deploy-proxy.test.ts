/**
 * The TLS reverse proxy examples in deploy/proxy (docs/deploy.md): accepted by `nginx -t` (with a
 * throwaway certificate in place of the Let's Encrypt paths) and `caddy adapt --validate`, and
 * agreeing with the server's defaults (body limit, timeouts above the agent's). Without nginx,
 * caddy or openssl the tool checks are skipped, saying so, except under CI=true, where they fail.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it, type TestContext } from 'vitest';

import { loadServerConfig } from '../../src/shared/config/server-config.js';

const PROXY_DIR = join(import.meta.dirname, '../../deploy/proxy');
const CERT = '/etc/letsencrypt/live/sync.example.com/fullchain.pem';
const KEY = '/etc/letsencrypt/live/sync.example.com/privkey.pem';
/** The agent's default batch.timeoutSeconds: the proxy must wait longer, so the agent decides. */
const AGENT_BATCH_TIMEOUT_SECONDS = 60;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env }, (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 127) : 0, stdout, stderr }));
  });
}

/** True when `tool` runs here; else skips the test (printing why), or fails it under CI. */
async function requireTool(ctx: TestContext, tool: string, versionArgs: string[], pkg: string): Promise<boolean> {
  if ((await run(tool, versionArgs)).code === 0) return true;
  const why = `${tool} not found (apt-get install ${pkg}): the proxy example was not checked with it`;
  if (process.env.CI === 'true') throw new Error(`${why}; CI must have it`);
  process.stderr.write(`SKIPPED: ${why}\n`);
  ctx.skip(why);
  return false;
}

const defaults = loadServerConfig({ env: {}, flags: { databaseUrl: 'postgres://x@localhost/x', adminKey: 'a'.repeat(16) } });

describe('nginx example', () => {
  const text = readFileSync(join(PROXY_DIR, 'nginx.conf'), 'utf8');
  const dir = mkdtempSync(join(tmpdir(), 'tidemark-nginx-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("accepts the server's default body limit, streams uploads and outwaits the agent's batch timeout", () => {
    const maxBody = /client_max_body_size (\d+)m;/.exec(text)?.[1];
    expect(Number(maxBody) * 1024 * 1024).toBeGreaterThanOrEqual(defaults.maxBodyBytes);
    expect(text).toMatch(/proxy_request_buffering off;/);
    const readTimeout = /proxy_read_timeout (\d+)s;/.exec(text)?.[1];
    expect(Number(readTimeout)).toBeGreaterThan(AGENT_BATCH_TIMEOUT_SECONDS);
    expect(text).toMatch(/server 127\.0\.0\.1:8080;/);
    expect(defaults.listen).toBe('127.0.0.1:8080');
  });

  it('serves the admin API and the console page only to the allowed networks, and never /metrics', () => {
    for (const prefix of ['/v1/admin/', '/admin']) expect(text).toMatch(new RegExp(`location ${prefix} \\{[^}]*deny all;`));
    expect(text).toMatch(/location = \/metrics \{\s*return 404;/);
  });

  it('passes nginx -t', async (ctx) => {
    if (!(await requireTool(ctx, 'nginx', ['-v'], 'nginx-light'))) return;
    if (!(await requireTool(ctx, 'openssl', ['version'], 'openssl'))) return;
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    const subject = '/CN=sync.example.com';
    const gen = await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', subject]);
    expect(gen.code, gen.stderr).toBe(0);
    writeFileSync(join(dir, 'tidemark.conf'), text.replaceAll(CERT, cert).replaceAll(KEY, key));
    // The site file as /etc/nginx/nginx.conf includes it: inside http {}.
    const main = `pid ${dir}/nginx.pid;\nerror_log ${dir}/error.log;\nevents {}\nhttp {\n  access_log off;\n  include ${dir}/tidemark.conf;\n}\n`;
    writeFileSync(join(dir, 'nginx.conf'), main);
    const r = await run('nginx', ['-t', '-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')]);
    expect(r.stderr).toContain('test is successful');
    expect(r.stderr).not.toMatch(/\[(warn|emerg|error)\]/);
    expect(r.code).toBe(0);
  });
});

describe('Caddy example', () => {
  const file = join(PROXY_DIR, 'Caddyfile');
  const text = readFileSync(file, 'utf8');
  const home = mkdtempSync(join(tmpdir(), 'tidemark-caddy-'));
  afterAll(() => rmSync(home, { recursive: true, force: true }));

  it("accepts the server's default body limit and outwaits the agent's batch timeout", () => {
    const maxBody = /max_size (\d+)MiB/.exec(text)?.[1];
    expect(Number(maxBody) * 1024 * 1024).toBeGreaterThanOrEqual(defaults.maxBodyBytes);
    const timeout = /response_header_timeout (\d+)s/.exec(text)?.[1];
    expect(Number(timeout)).toBeGreaterThan(AGENT_BATCH_TIMEOUT_SECONDS);
    expect(text).toMatch(/reverse_proxy 127\.0\.0\.1:8080/);
  });

  it('serves the admin API and the console page only to the allowed networks, and never /metrics', () => {
    const outside = /@admin_outside \{\s*path ([^\n]*)\n\s*not remote_ip/.exec(text)?.[1]?.split(/\s+/);
    expect(outside).toEqual(['/v1/admin/*', '/admin', '/admin/*']);
    expect(text).toMatch(/respond @admin_outside 403/);
    expect(text).toMatch(/respond \/metrics 404/);
  });

  it('passes caddy adapt --validate and is formatted as caddy fmt formats it', async (ctx) => {
    if (!(await requireTool(ctx, 'caddy', ['version'], 'caddy'))) return;
    // Caddy keeps state under $HOME / XDG dirs: a throwaway one.
    const env = { PATH: process.env.PATH ?? '', HOME: home, XDG_DATA_HOME: home, XDG_CONFIG_HOME: home };
    const r = await run('caddy', ['adapt', '--config', file, '--adapter', 'caddyfile', '--validate'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toHaveProperty('apps.http.servers');
    const fmt = await run('caddy', ['fmt', file], env);
    expect(fmt.stdout).toBe(text);
  });
});
