/**
 * The alert rules (config/alerts.yml): accepted by `promtool check rules`, their unit tests with
 * synthetic series (config/alerts.test.yml) pass under `promtool test rules`, and every alert links
 * to its section of docs/runbook.md. Without promtool the promtool checks are skipped, saying so,
 * except under CI=true, where they fail: .ci/run installs it (package prometheus).
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it, type TestContext } from 'vitest';

import { loadAlertRules, REPO_ROOT } from '../support/metric-names.js';

const RUNBOOK = join(REPO_ROOT, 'docs/runbook.md');
const RUNBOOK_URL_BASE = 'https://github.com/tidemark/tidemark/blob/main/docs/runbook.md#';

function run(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: REPO_ROOT, timeout: 120_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 127) : 0;
      resolve({ code, out: `${stdout}${stderr}` });
    });
  });
}

let promtoolAvailable: boolean | undefined;

/** True when promtool runs here; else skips the test (printing why), or fails it under CI. */
async function requirePromtool(ctx: TestContext): Promise<boolean> {
  promtoolAvailable ??= (await run('promtool', ['--version'])).code === 0;
  if (promtoolAvailable) return true;
  const why = 'promtool not found (apt-get install prometheus): the alert rules were not checked';
  if (process.env.CI === 'true') throw new Error(`${why}; CI must have it`);
  process.stderr.write(`SKIPPED: ${why}\n`);
  ctx.skip(why);
  return false;
}

const alerts = (loadAlertRules().groups as { rules: { alert?: string; annotations?: Record<string, string> }[] }[]).flatMap((g) => g.rules);

describe('alert rules', () => {
  it('pass promtool check rules', async (ctx) => {
    if (!(await requirePromtool(ctx))) return;
    const r = await run('promtool', ['check', 'rules', 'config/alerts.yml']);
    expect(r.out).toMatch(/SUCCESS/);
    expect(r.code, r.out).toBe(0);
  });

  it('pass their unit tests with synthetic series (promtool test rules)', async (ctx) => {
    if (!(await requirePromtool(ctx))) return;
    const r = await run('promtool', ['test', 'rules', 'config/alerts.test.yml']);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/SUCCESS/);
  });

  it('have unit tests for every fleet alert', () => {
    const tests = readFileSync(join(REPO_ROOT, 'config/alerts.test.yml'), 'utf8');
    const fleet = alerts.map((a) => a.alert ?? '').filter((a) => a.startsWith('TidemarkDatabase'));
    expect(fleet.length).toBeGreaterThanOrEqual(8);
    for (const a of fleet) expect(tests, a).toMatch(new RegExp(`alertname: ${a}\\n\\s+exp_alerts:\\n\\s+- exp_labels`));
  });

  it('each link to a section of docs/runbook.md that says what to do', () => {
    const runbook = readFileSync(RUNBOOK, 'utf8');
    const headings = new Set([...runbook.matchAll(/^## (Tidemark[A-Za-z]+)$/gm)].map((m) => m[1]));
    expect(alerts.length).toBeGreaterThan(20);
    for (const a of alerts) {
      const name = a.alert ?? '';
      expect(a.annotations?.runbook_url, name).toBe(`${RUNBOOK_URL_BASE}${name.toLowerCase()}`);
      expect(headings.has(name), `docs/runbook.md has no section "## ${name}"`).toBe(true);
      const section = runbook.split(`## ${name}\n`)[1]?.split(/^## /m)[0] ?? '';
      expect(section.trim().length, name).toBeGreaterThan(80);
    }
  });

  it('cover a database not synced, an agent silent, quarantine growing, a resync stuck, repeated mismatches, a held horizon and a blocked schema', () => {
    const exprs = alerts.map((a) => (a as { expr?: string }).expr ?? '');
    for (const re of [
      /time\(\) - tidemark_server_database_last_success_timestamp_seconds/,
      /tidemark_server_database_agent_up == 0/,
      /delta\(tidemark_server_database_quarantined_rows/,
      /tidemark_server_database_resync_pending_seconds/,
      /increase\(tidemark_server_database_mismatch_runs_total/,
      /tidemark_server_database_horizon_age_seconds/,
      /tidemark_server_database_tables_schema_blocked/,
    ])
      expect(
        exprs.some((e) => re.test(e)),
        String(re),
      ).toBe(true);
  });
});
