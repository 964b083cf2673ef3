/**
 * The admin console (/admin/) in a real browser: headless Chromium from the system's packages
 * (`CHROMIUM_PATH`, else `chromium` or `chromium-browser` on PATH) driven by playwright-core, on a
 * real server and PostgreSQL, reached through a reverse proxy that serves it at a sub-path
 * (/tidemark/), as a deployment may. Without a browser the browser test is skipped, saying so,
 * except under CI=true, where it fails: .ci/run installs chromium.
 *
 * Nothing here waits for time: the test drives the agent's runs itself, holds one run at a chosen
 * point, and waits for text to appear in the page (which polls the admin API).
 */
import { existsSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { delimiter, join } from 'node:path';

import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import type { Remote } from '../../src/agent/remote.js';
import { listTenants, tenantInfo } from '../../src/cli/admin-client.js';
import { TIDEMARK_VERSION } from '../../src/shared/metrics/build-info.js';
import { tablePath } from '../../src/shared/protocol.js';
import { createDatabase, startTestAgent, startTestServer } from '../support/fixtures.js';

/** The sub-path the proxy serves tidemark at. */
const PREFIX = '/tidemark';
/**
 * A safety net for a hung browser, never a measure of speed: every wait below ends as soon as the
 * page shows what it waits for.
 */
const WAIT_MS = 120_000;

function findChromium(): { path: string } | { why: string } {
  const given = process.env.CHROMIUM_PATH;
  if (given) return existsSync(given) ? { path: given } : { why: `CHROMIUM_PATH=${given} does not exist` };
  for (const dir of (process.env.PATH ?? '').split(delimiter))
    for (const name of ['chromium', 'chromium-browser']) if (dir && existsSync(join(dir, name))) return { path: join(dir, name) };
  return { why: 'no chromium or chromium-browser on PATH and no CHROMIUM_PATH (apt-get install chromium)' };
}

/** Skips the test, printing why, when there is no browser; fails it under CI. */
function requireBrowser(ctx: TestContext, browser: Browser | undefined, why: string): Browser {
  if (browser) return browser;
  const message = `${why}: the admin console was not tested in a browser`;
  if (process.env.CI === 'true') throw new Error(`${message}; CI must have it`);
  process.stderr.write(`SKIPPED: ${message}\n`);
  return ctx.skip(message);
}

interface PrefixProxy extends AsyncDisposable {
  url: string;
  /** Paths the browser asked for outside the prefix (a URL in the page that is not relative). */
  strays: string[];
  /** The Authorization headers the browser sent to the admin API. */
  sentAuthorization: (string | undefined)[];
}

/**
 * A reverse proxy on 127.0.0.1 that serves `target` at `PREFIX` and nothing else; with `adminKey`,
 * it adds the key to admin API requests, as a proxy that signs admins in itself does.
 */
async function startPrefixProxy(target: string, options: { adminKey?: string } = {}): Promise<PrefixProxy> {
  const upstream = new URL(target);
  const strays: string[] = [];
  const sentAuthorization: (string | undefined)[] = [];
  const server: Server = createServer((req, res) => {
    const url = req.url ?? '/';
    if (!url.startsWith(`${PREFIX}/`)) {
      strays.push(url);
      res.writeHead(404).end();
      return;
    }
    const path = url.slice(PREFIX.length);
    const headers = { ...req.headers, host: upstream.host };
    if (path.startsWith('/v1/admin/')) {
      sentAuthorization.push(req.headers.authorization);
      if (options.adminKey) headers.authorization = `Bearer ${options.adminKey}`;
    }
    const forward = request({ host: upstream.hostname, port: upstream.port, method: req.method, path, headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    forward.on('error', () => res.writeHead(502).end());
    req.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}${PREFIX}`,
    strays,
    sentAuthorization,
    async [Symbol.asyncDispose]() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** A promise the test resolves when it chooses. */
function gate(): { wait: Promise<void>; open: () => void } {
  let open = (): void => {};
  const wait = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { wait, open };
}

/** The agent's remote, whose `method` calls first wait for `hold.wait` while it is set: a run stops at a chosen point. */
function holdingAt(remote: Remote, method: keyof Remote, hold: { wait: Promise<void> | null }): Remote {
  return new Proxy(remote, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function') return value;
      const fn = value as (...args: unknown[]) => unknown;
      if (prop !== method) return fn.bind(target);
      return async (...args: unknown[]) => {
        if (hold.wait) await hold.wait;
        return fn.apply(target, args);
      };
    },
  });
}

describe('admin console', () => {
  const found = findChromium();
  let browser: Browser | undefined;
  let browserWhy = 'why' in found ? found.why : '';
  beforeAll(async () => {
    if ('path' in found) {
      try {
        browser = await chromium.launch({ executablePath: found.path, headless: true });
      } catch (e) {
        browserWhy = `${found.path} did not start: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`;
      }
    }
  });
  afterAll(async () => {
    await browser?.close();
  });

  it('serves the page without the key, its data only with it, and nothing else under /admin/', async () => {
    await using server = await startTestServer();
    const page = await fetch(`${server.url}/admin/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    const html = await page.text();
    // Relative URLs only: the page works at any sub-path.
    expect(html).toContain('src="console.js"');
    expect(html).not.toMatch(/(src|href)="\//);
    expect((await fetch(`${server.url}/admin/console.js`)).headers.get('content-type')).toMatch(/^text\/javascript/);
    expect((await fetch(`${server.url}/admin/console.css`)).headers.get('content-type')).toMatch(/^text\/css/);
    expect((await fetch(`${server.url}/admin/%2e%2e%2fpackage.json`)).status).toBe(404);
    expect((await fetch(`${server.url}/admin/secret.txt`)).status).toBe(404);
    const bare = await fetch(`${server.url}/admin`, { redirect: 'manual' });
    expect(bare.status).toBe(301);
    expect(bare.headers.get('location')).toBe('admin/');
    expect((await fetch(`${server.url}/v1/admin/tenants`)).status).toBe(401);
  });

  it('shows the fleet and a database behind a sub-path proxy, forces a resync of a chosen table that goes requested, running, done, revokes keys and registers a database', async (ctx) => {
    const b = requireBrowser(ctx, browser, browserWhy);
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await local.query(`create table items (id int primary key, name text not null)`);
    await local.query(`insert into items select i, 'item ' || i from generate_series(1, 300) i`);
    await local.query(`create table orders (id int primary key, item int not null)`);
    await local.query(`insert into orders select i, i % 300 + 1 from generate_series(1, 50) i`);
    // A name with markup: the page must show it as text.
    const reg = await server.register('acme', 'Lyon <b>plant</b>');
    // A database whose agent never came: worst first, so above acme's.
    const never = await server.register('beta', 'Paris');
    // Held after the run reported the resync running, before it reports it done (it recounts first).
    const hold: { wait: Promise<void> | null } = { wait: null };
    await using agent = await startTestAgent(local, server, reg, {}, { wrapRemote: (r) => holdingAt(r, 'recount', hold) });
    await agent.local.tracking.track('items');
    await agent.local.tracking.track('orders');
    expect((await agent.agent.tick({ checkCount: true })).converged).toBe(true);
    await using proxy = await startPrefixProxy(server.url);

    const context = await b.newContext();
    const page: Page = await context.newPage();
    page.setDefaultTimeout(WAIT_MS);
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error') pageErrors.push(m.text());
    });
    try {
      // Without the trailing slash: the relative redirect keeps the sub-path.
      await page.goto(`${proxy.url}/admin`);
      expect(new URL(page.url()).pathname).toBe(`${PREFIX}/admin/`);
      await page.getByLabel('Admin key').fill(server.adminKey);
      await page.getByRole('button', { name: 'Sign in' }).click();

      // The key stays in this tab's sessionStorage, nowhere that outlives it.
      expect(await page.evaluate('[sessionStorage.length, localStorage.length, document.cookie]')).toEqual([1, 0, '']);

      // The fleet: worst first, filtered by text or state, sorted by a column.
      const row = page.locator(`tr[data-database="${reg.databaseId}"]`);
      await row.waitFor();
      const fleetRows = page.locator('tr[data-database]');
      const shownIds = async () => fleetRows.evaluateAll((rows) => rows.map((r) => r.getAttribute('data-database')));
      expect(await shownIds()).toEqual([never.databaseId, reg.databaseId]);
      expect(await fleetRows.nth(0).locator('.state').textContent()).toBe('never');
      expect(await row.textContent()).toContain('acme');
      // From the agent's run report.
      expect(await row.locator('td').nth(3).textContent()).toBe(TIDEMARK_VERSION);
      expect(await row.getByRole('link').textContent()).toBe('Lyon <b>plant</b>');
      expect(await page.locator('b', { hasText: 'plant' }).count()).toBe(0);
      await page.getByLabel('Filter').fill('lyon');
      expect(await shownIds()).toEqual([reg.databaseId]);
      await page.getByLabel('Filter').fill('');
      await page.getByLabel('State').selectOption('never');
      expect(await shownIds()).toEqual([never.databaseId]);
      await page.getByLabel('State').selectOption('');
      await page.getByRole('button', { name: 'Database' }).click();
      expect(await shownIds()).toEqual([reg.databaseId, never.databaseId]);

      // One database.
      await row.getByRole('link').click();
      const items = page.locator('#tables tr[data-table="public.items"]');
      await items.waitFor();
      expect(await page.locator('h1').textContent()).toBe('acme / Lyon <b>plant</b>');
      expect(await items.locator('td').nth(2).textContent()).toBe('300');
      expect(await items.locator('td').nth(4).textContent()).toBe('300');
      expect(await page.locator('#runs tr').count()).toBe(1);
      const orders = page.locator('#tables tr[data-table="public.orders"]');
      expect(await orders.locator('td').nth(4).textContent()).toBe('50');

      // Force a resync of the chosen table; a dismissed confirmation asks for nothing.
      await items.getByRole('checkbox').check();
      const resyncSelected = page.getByRole('button', { name: 'Resync selected tables…' });
      const dialogs: string[] = [];
      page.once('dialog', (d) => {
        dialogs.push(d.message());
        void d.dismiss();
      });
      await resyncSelected.click();
      expect(dialogs[0]).toContain('public.items');
      expect((await tenantInfo(server.url, server.adminKey, 'acme', reg.databaseId)).tables.every((t) => t.resync === null)).toBe(true);
      page.once('dialog', (d) => void d.accept());
      await resyncSelected.click();
      await items.locator('td.resync', { hasText: 'requested' }).waitFor();
      expect(await orders.locator('td.resync').textContent()).toBe('–');

      // The agent's next run, held while the page shows the resync running.
      const held = gate();
      hold.wait = held.wait;
      const run = agent.agent.tick();
      await items.locator('td.resync', { hasText: 'running' }).waitFor();
      held.open();
      expect((await run).converged).toBe(true);
      await items.locator('td.resync', { hasText: 'done' }).waitFor();
      expect(await items.locator('td.resync').textContent()).toContain('0 rows repaired');
      expect(await orders.locator('td.resync').textContent()).toBe('–');

      // Revoke the database's keys: the new key, shown once, opens it; the old one no longer does.
      page.once('dialog', (d) => void d.accept());
      await page.getByRole('button', { name: 'Revoke keys and issue a new one…' }).click();
      const newKey = (await page.locator('#api-key').textContent()) ?? '';
      const itemsPath = `${server.url}${tablePath('acme', reg.databaseId, { schema: 'public', name: 'items' })}`;
      expect((await fetch(itemsPath, { headers: { authorization: `Bearer ${reg.apiKey}` } })).status).toBe(401);
      expect((await fetch(itemsPath, { headers: { authorization: `Bearer ${newKey}` } })).status).toBe(200);

      // Register a database: its key is shown once, and works.
      await page.getByRole('link', { name: 'Register a database' }).click();
      await page.getByLabel(/Client id/).fill('gamma');
      await page.getByLabel('Database name').fill('Nice');
      await page.getByRole('button', { name: 'Register' }).click();
      const apiKey = (await page.locator('#api-key').textContent()) ?? '';
      const registered = (await listTenants(server.url, server.adminKey)).tenants.find((t) => t.clientId === 'gamma');
      expect(registered?.name).toBe('Nice');
      const probe = await fetch(`${server.url}${tablePath('gamma', registered?.databaseId ?? '', { schema: 'public', name: 'nothing' })}`, {
        headers: { authorization: `Bearer ${apiKey}` },
      });
      expect(probe.status).toBe(404);

      expect(proxy.strays).toEqual([]);
      expect(proxy.sentAuthorization.every((a) => a === `Bearer ${server.adminKey}`)).toBe(true);
      expect(pageErrors).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('signs in through a reverse proxy that adds the admin key: the page sends none', async (ctx) => {
    const b = requireBrowser(ctx, browser, browserWhy);
    await using server = await startTestServer();
    const reg = await server.register('acme', 'Lyon');
    await using proxy = await startPrefixProxy(server.url, { adminKey: server.adminKey });
    const context = await b.newContext();
    const page = await context.newPage();
    page.setDefaultTimeout(WAIT_MS);
    try {
      await page.goto(`${proxy.url}/admin/`);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.locator(`tr[data-database="${reg.databaseId}"]`).waitFor();
      expect(proxy.sentAuthorization.length).toBeGreaterThan(0);
      expect(proxy.sentAuthorization.every((a) => a === undefined)).toBe(true);
      expect(proxy.strays).toEqual([]);
    } finally {
      await context.close();
    }
  });
});
