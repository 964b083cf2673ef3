/**
 * Database connection strings as psql users write them: a URL (`postgresql://u@h/db`) or libpq's
 * keyword/value form (`host=localhost dbname=erp`), with whatever is missing taken from the PG*
 * environment variables, as libpq does. pg parses URLs (pg-connection-string) and reads PG* itself,
 * but not the keyword/value form: this turns that form into the URL pg understands.
 * https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNSTRING
 */
import { parse as parseUrl } from 'pg-connection-string';

import { ConfigError } from './errors.js';

/** True for the URL form (what pg-connection-string parses as is). */
export function isConnectionUrl(text: string): boolean {
  return /^postgres(?:ql)?:\/\//i.test(text) || text.startsWith('socket:');
}

/**
 * Parses libpq's keyword/value form: `key = value` pairs separated by whitespace; a value may be
 * single-quoted, with `\'` and `\\` escapes inside quotes or out.
 */
export function parseConninfo(text: string): Map<string, string> {
  const out = new Map<string, string>();
  let i = 0;
  const fail = (why: string): never => {
    throw new ConfigError(`invalid connection string (keyword=value form): ${why}`);
  };
  const skipSpace = (): void => {
    while (i < text.length && /\s/.test(text[i] as string)) i++;
  };
  for (skipSpace(); i < text.length; skipSpace()) {
    const start = i;
    while (i < text.length && /[A-Za-z0-9_]/.test(text[i] as string)) i++;
    const key = text.slice(start, i);
    if (!key) fail(`expected a keyword at ${JSON.stringify(text.slice(start, start + 10))}`);
    skipSpace();
    if (text[i] !== '=') fail(`missing "=" after ${key}`);
    i++;
    skipSpace();
    let value = '';
    if (text[i] === "'") {
      i++;
      for (;;) {
        if (i >= text.length) fail(`unterminated quoted value of ${key}`);
        const c = text[i] as string;
        if (c === '\\' && i + 1 < text.length) {
          value += text[i + 1];
          i += 2;
        } else if (c === "'") {
          i++;
          break;
        } else {
          value += c;
          i++;
        }
      }
    } else {
      while (i < text.length && !/\s/.test(text[i] as string)) {
        if (text[i] === '\\' && i + 1 < text.length) i++;
        value += text[i];
        i++;
      }
    }
    out.set(key, value);
  }
  if (out.size === 0) fail('it is empty');
  return out;
}

/**
 * A connection string in URL form: a URL is returned as is; the keyword/value form becomes the
 * equivalent URL (host, port, dbname, user and password in their places, other keywords such as
 * sslmode as query parameters). Parts left out stay out, so pg takes them from PG* variables.
 */
export function toConnectionUrl(text: string): string {
  const trimmed = text.trim();
  if (isConnectionUrl(trimmed)) return trimmed;
  const kv = parseConninfo(trimmed);
  const take = (k: string): string | undefined => {
    const v = kv.get(k);
    kv.delete(k);
    return v;
  };
  const user = take('user');
  const password = take('password');
  const host = take('host') ?? take('hostaddr');
  kv.delete('hostaddr');
  const port = take('port');
  const dbname = take('dbname');
  const query = new URLSearchParams();
  // A socket directory, or several hosts, travel as the host parameter (pg-connection-string reads it).
  const plainHost = host !== undefined && /^[A-Za-z0-9.-]+$|^[0-9a-fA-F:]+$/.test(host) ? host : undefined;
  if (host !== undefined && plainHost === undefined) query.set('host', host);
  for (const [k, v] of kv) query.set(k, v);
  const auth =
    user !== undefined || password !== undefined ? `${encodeURIComponent(user ?? '')}${password !== undefined ? `:${encodeURIComponent(password)}` : ''}@` : '';
  const hostPart = plainHost === undefined ? '' : plainHost.includes(':') ? `[${plainHost}]` : plainHost;
  const q = query.toString();
  return `postgresql://${auth}${hostPart}${port !== undefined ? `:${port}` : ''}/${dbname !== undefined ? encodeURIComponent(dbname) : ''}${q ? `?${q}` : ''}`;
}

/** Problems of a connection string (either form), or null when pg can use it. */
export function connectionStringProblem(text: string): string | null {
  try {
    parseUrl(toConnectionUrl(text));
    return null;
  } catch (e) {
    return e instanceof ConfigError ? e.message : 'is neither a postgresql:// URL nor a keyword=value connection string';
  }
}

/** The PG* variables libpq reads for the parts a connection string leaves out. */
export const PG_ENV_VARS = ['PGHOST', 'PGHOSTADDR', 'PGPORT', 'PGDATABASE', 'PGUSER', 'PGPASSWORD', 'PGSSLMODE', 'PGAPPNAME', 'PGCONNECT_TIMEOUT'] as const;

/** True when the environment names a database the way psql would find it (PGHOST, PGDATABASE …). */
export function pgEnvDefined(env: Readonly<Record<string, string | undefined>>): boolean {
  return ['PGHOST', 'PGHOSTADDR', 'PGPORT', 'PGDATABASE', 'PGUSER'].some((k) => (env[k] ?? '') !== '');
}

/** Redacts the password of a connection string (either form) for logs and `config check`. */
export function redactConnectionString(text: string): string {
  try {
    const u = new URL(toConnectionUrl(text));
    if (u.password) u.password = '***';
    if (u.searchParams.has('password')) u.searchParams.set('password', '***');
    return u.toString();
  } catch {
    return '<unparsable connection string>';
  }
}

/**
 * The database the PG* variables name, as a URL (password left out: pg reads PGPASSWORD and
 * ~/.pgpass itself), or undefined when none is set. What `psql` with no arguments would use.
 */
export function connectionFromPgEnv(env: Readonly<Record<string, string | undefined>>): string | undefined {
  if (!pgEnvDefined(env)) return undefined;
  const quote = (v: string): string => `'${v.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`;
  const parts: string[] = [];
  for (const [key, name] of [
    ['host', 'PGHOST'],
    ['hostaddr', 'PGHOSTADDR'],
    ['port', 'PGPORT'],
    ['dbname', 'PGDATABASE'],
    ['user', 'PGUSER'],
  ] as const) {
    const v = env[name];
    if (v) parts.push(`${key}=${quote(v)}`);
  }
  return toConnectionUrl(parts.join(' '));
}
