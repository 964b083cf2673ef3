import { readFileSync } from 'node:fs';

import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';

import { MetricName } from '../../src/shared/metrics/names.js';
import {
  alertRuleExpressions,
  allPanels,
  type DashboardFile,
  dashboardExpressions,
  loadAlertRules,
  loadDashboards,
  metricReferences,
  REPO_ROOT,
  templateVariables,
  usedMetrics,
  variableQuery,
} from '../support/metric-names.js';

const dashboards = loadDashboards();
const declared = new Set<string>(Object.values(MetricName));
// biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's variable syntax, not a JavaScript template.
const DATASOURCE_VARIABLE_REF = { type: 'prometheus', uid: '${datasource}' };

function dashboard(uid: string): DashboardFile {
  const d = dashboards.find((x) => x.json.uid === uid);
  if (!d) throw new Error(`no dashboard with uid ${uid} in dashboards/`);
  return d;
}

describe('metric name extraction', () => {
  it('finds tidemark names in PromQL and strips histogram series suffixes', () => {
    const refs = metricReferences(
      'histogram_quantile(0.95, sum by (le) (rate(tidemark_server_http_request_duration_seconds_bucket{job="tidemark-server"}[5m]))) / tidemark_agent_rows_uploaded_total',
    );
    expect(refs).toEqual([
      { token: 'tidemark_server_http_request_duration_seconds_bucket', base: 'tidemark_server_http_request_duration_seconds', suffix: '_bucket' },
      { token: 'tidemark_agent_rows_uploaded_total', base: 'tidemark_agent_rows_uploaded_total', suffix: '' },
    ]);
  });
});

describe('Grafana dashboards', () => {
  it('exist for the agent, the server and the fleet, for current Grafana', () => {
    for (const uid of ['tidemark-agent', 'tidemark-server', 'tidemark-fleet']) {
      const { json } = dashboard(uid);
      expect(json.schemaVersion).toBeGreaterThanOrEqual(36);
      expect(json.__inputs).toEqual([expect.objectContaining({ type: 'datasource', pluginId: 'prometheus' })]);
    }
    expect(dashboards.map((d) => d.file)).toEqual(
      expect.arrayContaining(['dashboards/tidemark-agent.json', 'dashboards/tidemark-server.json', 'dashboards/tidemark-fleet.json']),
    );
  });

  it('use only metric names declared in shared/metrics/names.ts', () => {
    const undeclared = [...usedMetrics()].filter(([name]) => !declared.has(name)).map(([name, uses]) => `${name} (${uses[0]?.at.file}: ${uses[0]?.at.where})`);
    expect(undeclared).toEqual([]);
    // The check above must have something to check.
    expect(usedMetrics().size).toBeGreaterThan(15);
  });

  it.each(dashboards)('$file picks its Prometheus through a datasource variable, used by every panel and query variable', ({ json }) => {
    const vars = templateVariables(json);
    expect(vars.find((v) => v.name === 'datasource')).toMatchObject({ type: 'datasource', query: 'prometheus' });
    for (const panel of allPanels(json).filter((p) => p.type !== 'row')) {
      expect(panel.datasource, String(panel.title)).toEqual(DATASOURCE_VARIABLE_REF);
    }
    for (const v of vars.filter((x) => x.type === 'query')) expect(v.datasource, String(v.name)).toEqual(DATASOURCE_VARIABLE_REF);
  });

  it('lets the agent dashboard select tables (multi-value, with All)', () => {
    const table = templateVariables(dashboard('tidemark-agent').json).find((v) => v.name === 'table');
    expect(table).toMatchObject({ type: 'query', multi: true, includeAll: true });
    expect(variableQuery(table ?? {})).toMatch(/^label_values\(tidemark_agent_rows_uploaded_total\b.*,\s*table\)$/);
  });

  it('show the fleet: databases by state, worst lag, stale databases, resyncs and quarantine, on the per-database series, selectable by client', () => {
    const fleet = dashboard('tidemark-fleet');
    const exprs = dashboardExpressions(fleet).map((e) => e.expr);
    const has = (re: RegExp) => exprs.some((e) => re.test(e));
    expect(has(/sum by \(state\) \(tidemark_server_fleet_databases/)).toBe(true);
    expect(has(/tidemark_server_database_lag_seconds/)).toBe(true);
    expect(has(/time\(\) - tidemark_server_database_last_success_timestamp_seconds/)).toBe(true);
    expect(has(/tidemark_server_database_resync_pending_seconds/)).toBe(true);
    expect(has(/tidemark_server_database_quarantined_rows/)).toBe(true);
    const client = templateVariables(fleet.json).find((v) => v.name === 'client');
    expect(client).toMatchObject({ type: 'query', multi: true, includeAll: true });
  });

  it.each(dashboards)('$file has a title and at least one query on every panel (rows only group them)', ({ json }) => {
    const panels = allPanels(json);
    expect(panels.length).toBeGreaterThan(5);
    for (const panel of panels) {
      expect(typeof panel.title === 'string' && panel.title.trim().length > 0, JSON.stringify(panel.gridPos)).toBe(true);
      if (panel.type === 'row') continue;
      const targets = Array.isArray(panel.targets) ? (panel.targets as { expr?: unknown }[]) : [];
      expect(targets.length, String(panel.title)).toBeGreaterThan(0);
      for (const t of targets) expect(typeof t.expr === 'string' && t.expr.trim().length > 0, String(panel.title)).toBe(true);
    }
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it.each(dashboards)('$file uses a tidemark metric in every panel query', (d) => {
    const withoutMetric = dashboardExpressions(d).filter((e) => e.where.startsWith('panel') && metricReferences(e.expr).length === 0 && !/\bup\{/.test(e.expr));
    expect(withoutMetric).toEqual([]);
  });
});

describe('Prometheus alert rules', () => {
  const rules = (loadAlertRules().groups as { name: string; rules: Record<string, unknown>[] }[]).flatMap((g) => g.rules);

  it('tell the operator how urgent each alert is and what to do', () => {
    expect(rules.length).toBeGreaterThan(5);
    for (const rule of rules) {
      expect(rule, String(rule.alert)).toMatchObject({
        alert: expect.stringMatching(/^Tidemark[A-Za-z]+$/),
        expr: expect.any(String),
        for: expect.stringMatching(/^\d+[smh]$/),
        labels: { severity: expect.stringMatching(/^(critical|warning|info)$/) },
        annotations: { summary: expect.stringMatching(/\S/), description: expect.stringMatching(/\S.{40,}/) },
      });
    }
  });

  it('cover the agent and the server going down, lag, quarantine, batch failures, stale success and 5xx', () => {
    const exprs = alertRuleExpressions().map((e) => e.expr);
    const has = (re: RegExp) => exprs.some((e) => re.test(e));
    expect(has(/up\{job="tidemark-agent"\} == 0/)).toBe(true);
    expect(has(/up\{job="tidemark-server"\} == 0/)).toBe(true);
    expect(has(/tidemark_agent_lag_seconds/)).toBe(true);
    expect(has(/tidemark_agent_quarantined_rows/)).toBe(true);
    expect(has(/tidemark_agent_batch_failures_total/)).toBe(true);
    expect(has(/time\(\) - tidemark_agent_last_success_timestamp_seconds/)).toBe(true);
    expect(has(/status_class="5xx"/)).toBe(true);
  });

  it('select jobs that config/prometheus.yml scrapes, and are loaded by it', () => {
    const prometheus = parseYaml(readFileSync(`${REPO_ROOT}config/prometheus.yml`, 'utf8')) as {
      rule_files: string[];
      scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[];
    };
    expect(prometheus.rule_files).toContain('alerts.yml');
    const jobs = new Map(prometheus.scrape_configs.map((c) => [c.job_name, c.static_configs.flatMap((s) => s.targets)]));
    expect(jobs.get('tidemark-agent')).toEqual(['127.0.0.1:9465']);
    expect(jobs.get('tidemark-server')).toEqual(['127.0.0.1:8080']);
    const selected = [...dashboards.flatMap(dashboardExpressions), ...alertRuleExpressions()].flatMap((e) =>
      [...e.expr.matchAll(/\bjob="([^"]+)"/g)].map((m) => m[1]),
    );
    expect(selected.length).toBeGreaterThan(0);
    for (const job of selected) expect(jobs.has(job ?? ''), job).toBe(true);
  });
});
