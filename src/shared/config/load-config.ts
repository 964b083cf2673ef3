import { readFileSync } from 'node:fs';

import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';

import { ConfigError } from '../errors.js';
import { shapeOf } from './redact.js';

/** Inputs of a config load; all of it is passed in, so loading is pure and testable. */
export interface ConfigSources {
  /** Path of a YAML file, or undefined. */
  file?: string | undefined;
  /** The process environment (only TIDEMARK_* names are read). */
  env: Readonly<Record<string, string | undefined>>;
  /** Values from CLI flags, already shaped like the config (undefined means "not given"). */
  flags: Record<string, unknown>;
}

/** Maps an environment variable to a config path, e.g. TIDEMARK_API_KEY -> ['apiKey']. */
export type EnvMap = Readonly<Record<string, readonly string[]>>;

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function merge(base: Obj, over: Obj): Obj {
  const out: Obj = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) continue;
    out[k] = isObj(v) && isObj(out[k]) ? merge(out[k] as Obj, v) : v;
  }
  return out;
}

function setPath(target: Obj, path: readonly string[], value: unknown): void {
  let node = target;
  for (const p of path.slice(0, -1)) {
    if (!isObj(node[p])) node[p] = {};
    node = node[p] as Obj;
  }
  node[path[path.length - 1] as string] = value;
}

/** Secrets in files are written `{ env: TIDEMARK_X }`; only the TIDEMARK_ prefix resolves. */
function resolveEnvRefs(v: unknown, env: ConfigSources['env'], path: string, errors: string[]): unknown {
  if (isObj(v)) {
    const keys = Object.keys(v);
    if (keys.length === 1 && keys[0] === 'env' && typeof v.env === 'string') {
      if (!v.env.startsWith('TIDEMARK_')) {
        errors.push(`${path}: only TIDEMARK_* variables can be referenced, not ${v.env}`);
        return undefined;
      }
      const value = env[v.env];
      if (value === undefined) errors.push(`${path}: environment variable ${v.env} is not set`);
      return value;
    }
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, resolveEnvRefs(x, env, path ? `${path}.${k}` : k, errors)]));
  }
  if (Array.isArray(v)) return v.map((x, i) => resolveEnvRefs(x, env, `${path}[${i}]`, errors));
  return v;
}

/** The keys a config file may hold, nested: a key maps to its sub-keys, or to null for a value. */
type KeyTree = Map<string, KeyTree | null>;

function addKeys(tree: KeyTree, schema: z.core.$ZodType): void {
  for (const [k, sub] of Object.entries(shapeOf(schema) ?? {})) {
    const subShape = shapeOf(sub);
    if (!subShape) {
      if (!tree.has(k)) tree.set(k, null);
      continue;
    }
    const node = tree.get(k) ?? new Map();
    tree.set(k, node);
    addKeys(node, sub);
  }
}

function keyPaths(tree: KeyTree, prefix = ''): string[] {
  return [...tree].flatMap(([k, sub]) => [`${prefix}${k}`, ...(sub ? keyPaths(sub, `${prefix}${k}.`) : [])]);
}

/** Edit distance (insertions, deletions, substitutions, adjacent swaps), case-insensitive. */
function distance(a: string, b: string): number {
  const x = a.toLowerCase();
  const y = b.toLowerCase();
  const d: number[][] = Array.from({ length: x.length + 1 }, (_, i) => Array.from({ length: y.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= x.length; i++)
    for (let j = 1; j <= y.length; j++) {
      const row = d[i] as number[];
      const prev = d[i - 1] as number[];
      row[j] = Math.min((prev[j] as number) + 1, (row[j - 1] as number) + 1, (prev[j - 1] as number) + (x[i - 1] === y[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && x[i - 1] === y[j - 2] && x[i - 2] === y[j - 1]) row[j] = Math.min(row[j] as number, ((d[i - 2] as number[])[j - 2] as number) + 1);
    }
  return (d[x.length] as number[])[y.length] as number;
}

/** The valid key path closest to a misspelled one (by its full path or its last part), if any is close. */
function closestKey(path: string, tree: KeyTree): string | undefined {
  const key = path.split('.').pop() ?? path;
  let best: { path: string; d: number } | undefined;
  for (const candidate of keyPaths(tree)) {
    const d = Math.min(distance(path, candidate), distance(key, candidate.split('.').pop() ?? candidate));
    if (!best || d < best.d) best = { path: candidate, d };
  }
  return best && best.d <= Math.max(2, Math.floor(key.length / 3)) ? best.path : undefined;
}

/** Reports every key of a file that no tidemark command reads, naming the closest valid key. */
function checkKnownKeys(value: Obj, tree: KeyTree, root: KeyTree, prefix: string, errors: string[]): void {
  for (const [k, v] of Object.entries(value)) {
    const path = `${prefix}${k}`;
    if (!tree.has(k)) {
      const near = closestKey(path, root);
      errors.push(`${path}: unknown key${near ? ` (did you mean ${near}?)` : ''}`);
      continue;
    }
    const sub = tree.get(k);
    if (sub && isObj(v) && !('env' in v && Object.keys(v).length === 1)) checkKnownKeys(v, sub, root, `${path}.`, errors);
  }
}

function getPath(value: unknown, path: readonly PropertyKey[]): unknown {
  let node = value;
  for (const p of path) {
    if (!isObj(node)) return undefined;
    node = node[String(p)];
  }
  return node;
}

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null) {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}

export interface LoadOptions {
  /**
   * Schemas of the other commands whose keys the same file may hold (ignored here). A key that
   * neither the command's schema nor these know is an error naming the closest valid key.
   */
  alsoInFiles?: readonly z.core.$ZodType[];
  /** Defaults computed from the environment (below the file), e.g. a database from PG* variables. */
  defaults?: Obj;
}

/**
 * defaults (in the schema) < file < TIDEMARK_* env < flags. Returns a deep-frozen config, or throws
 * one ConfigError listing every bad path.
 */
export function loadConfig<S extends z.ZodType>(
  schema: S,
  envMap: EnvMap,
  sources: ConfigSources,
  /** Where a user can set a key, e.g. `--database or TIDEMARK_DATABASE_URL`, by config path. */
  hints: Readonly<Record<string, string>> = {},
  options: LoadOptions = {},
): Readonly<z.output<S>> {
  const { alsoInFiles = [], defaults = {} } = options;
  const errors: string[] = [];
  let fromFile: Obj = {};
  if (sources.file) {
    let text: string;
    try {
      text = readFileSync(sources.file, 'utf8');
    } catch (e) {
      throw new ConfigError(`cannot read config file ${sources.file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
    let parsed: unknown;
    try {
      parsed = parseYaml(text);
    } catch (e) {
      throw new ConfigError(`config file ${sources.file} is not valid YAML: ${(e as Error).message.split('\n')[0]}`);
    }
    if (parsed != null && !isObj(parsed)) throw new ConfigError(`config file ${sources.file} must hold a mapping`);
    // Strict: a misspelled key (`concurency`) is an error, not silently ignored.
    const fileKeys: KeyTree = new Map();
    for (const s of [schema, ...alsoInFiles]) addKeys(fileKeys, s);
    checkKnownKeys((parsed ?? {}) as Obj, fileKeys, fileKeys, '', errors);
    // One file may serve several commands: only the keys this command reads are resolved, so an
    // environment reference it does not need (another command's secret) need not be set.
    const shape = shapeOf(schema);
    const known = shape ? new Set(Object.keys(shape)) : null;
    const own = Object.fromEntries(Object.entries(parsed ?? {}).filter(([k]) => known === null || known.has(k)));
    fromFile = (resolveEnvRefs(own, sources.env, '', errors) as Obj) ?? {};
  }
  const fromEnv: Obj = {};
  for (const [name, path] of Object.entries(envMap)) {
    const value = sources.env[name];
    if (value !== undefined && value !== '') setPath(fromEnv, path, value);
  }
  const merged = merge(merge(merge(defaults, fromFile), fromEnv), sources.flags);
  const result = schema.safeParse(merged);
  if (!result.success) {
    for (const issue of result.error.issues) {
      const path = issue.path.join('.') || '(root)';
      const missing = issue.code === 'invalid_type' && getPath(merged, issue.path) === undefined;
      const hint = hints[path];
      errors.push(missing ? `${path} is required${hint ? ` (${hint})` : ''}` : `${path}: ${issue.message}`);
    }
  }
  if (errors.length || !result.success) throw new ConfigError(`invalid configuration: ${errors.join('; ')}`);
  return deepFreeze(result.data);
}

/** Parses `host:port` / `[::1]:port`; port 0 picks a free one. */
export function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || port > 65535) throw new ConfigError(`invalid listen address ${JSON.stringify(text)}: use HOST:PORT`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}
