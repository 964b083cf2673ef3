/**
 * The PromQL of the Grafana dashboards (dashboards/*.json) and the alert rules (config/alerts.yml),
 * and the tidemark metric names it uses: so tests can check that every name is declared and exported.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { parse as parseYaml } from 'yaml';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const DASHBOARDS_DIR = `${REPO_ROOT}dashboards/`;
export const ALERT_RULES_FILE = `${REPO_ROOT}config/alerts.yml`;

/** One PromQL expression and where it was found (for readable failures). */
export interface PromQlExpression {
  file: string;
  where: string;
  expr: string;
}

/** A tidemark metric named in an expression: `base` is the declared name, `suffix` a histogram series suffix. */
export interface MetricReference {
  token: string;
  base: string;
  suffix: '' | '_bucket' | '_count' | '_sum';
}

const METRIC_TOKEN = /\btidemark_[a-z0-9_]+/g;
const HISTOGRAM_SUFFIX = /(_bucket|_count|_sum)$/;

export function metricReferences(expr: string): MetricReference[] {
  return [...expr.matchAll(METRIC_TOKEN)].map(([token]) => {
    const suffix = (HISTOGRAM_SUFFIX.exec(token)?.[1] ?? '') as MetricReference['suffix'];
    return { token, base: suffix ? token.slice(0, -suffix.length) : token, suffix };
  });
}

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

export interface DashboardFile {
  file: string;
  json: Json;
}

export function loadDashboards(): DashboardFile[] {
  return readdirSync(DASHBOARDS_DIR)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => ({ file: `dashboards/${f}`, json: JSON.parse(readFileSync(`${DASHBOARDS_DIR}${f}`, 'utf8')) as Json }));
}

export function loadAlertRules(): Json {
  return parseYaml(readFileSync(ALERT_RULES_FILE, 'utf8')) as Json;
}

/** Every panel, rows' nested panels included (collapsed rows keep theirs in `panels`). */
export function allPanels(dashboard: Json): Json[] {
  const out: Json[] = [];
  const walk = (panels: unknown): void => {
    for (const p of list(panels)) {
      if (!isObject(p)) continue;
      out.push(p);
      walk(p.panels);
    }
  };
  walk(dashboard.panels);
  return out;
}

export function templateVariables(dashboard: Json): Json[] {
  return list(isObject(dashboard.templating) ? dashboard.templating.list : undefined).filter(isObject);
}

/** A query variable's query: a string in old dashboards, `{ query }` in current ones. */
export function variableQuery(v: Json): string {
  if (typeof v.query === 'string') return v.query;
  if (isObject(v.query) && typeof v.query.query === 'string') return v.query.query;
  return '';
}

export function dashboardExpressions({ file, json }: DashboardFile): PromQlExpression[] {
  const out: PromQlExpression[] = [];
  for (const panel of allPanels(json)) {
    list(panel.targets).forEach((t, i) => {
      if (isObject(t) && typeof t.expr === 'string') out.push({ file, where: `panel "${String(panel.title)}" target ${i}`, expr: t.expr });
    });
  }
  for (const v of templateVariables(json)) {
    if (v.type === 'query') out.push({ file, where: `variable ${String(v.name)}`, expr: variableQuery(v) });
  }
  return out;
}

export function alertRuleExpressions(rules: Json = loadAlertRules(), file = 'config/alerts.yml'): PromQlExpression[] {
  const out: PromQlExpression[] = [];
  for (const group of list(rules.groups).filter(isObject)) {
    for (const rule of list(group.rules).filter(isObject)) {
      const name = String(rule.alert ?? rule.record);
      if (typeof rule.expr === 'string') out.push({ file, where: `rule ${name}`, expr: rule.expr });
    }
  }
  return out;
}

/** The PromQL of every dashboard and of the alert rules. */
export function monitoringExpressions(): PromQlExpression[] {
  return [...loadDashboards().flatMap(dashboardExpressions), ...alertRuleExpressions()];
}

/** Each metric referenced by the dashboards and alert rules, with the first place that uses it. */
export function usedMetrics(): Map<string, { reference: MetricReference; at: PromQlExpression }[]> {
  const used = new Map<string, { reference: MetricReference; at: PromQlExpression }[]>();
  for (const at of monitoringExpressions()) {
    for (const reference of metricReferences(at.expr)) {
      const uses = used.get(reference.base) ?? [];
      uses.push({ reference, at });
      used.set(reference.base, uses);
    }
  }
  return used;
}
