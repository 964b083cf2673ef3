/** What the commands share: flags, config loading, process lifecycle, one-line errors. */
import { existsSync, readFileSync } from 'node:fs';
import { posix, win32 } from 'node:path';

import type { Command } from 'commander';
import type pg from 'pg';

import { fileKeyProvider } from '../agent/config-file.js';
import { httpRemoteFactory } from '../agent/http-remote.js';
import { proxySettingsFrom, type TransportOptions } from '../agent/http-transport.js';
import type { RemoteFactory } from '../agent/remote.js';
import { loadAdminConfig, loadTrackConfig } from '../shared/config/admin-config.js';
import { type AgentConfig, loadAgentConfig } from '../shared/config/agent-config.js';
import { ConfigError, ErrorCode, TidemarkError, toError } from '../shared/errors.js';
import { createLogger, type Logger, type LogLevel } from '../shared/logger.js';
import { classifyPgError, createPool } from '../shared/pg.js';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
export const EXIT_CONFIG = 78;

/** Thrown by commands to exit with a code after printing a message. */
export class ExitError extends Error {
  constructor(
    readonly exitCode: number,
    message: string,
  ) {
    super(message);
  }
}

export function addAgentOptions(cmd: Command): Command {
  return cmd
    .option('--config <file>', 'YAML config file (see config/agent.example.yaml)')
    .option('--database <url>', 'local database URL (env TIDEMARK_DATABASE_URL)')
    .option('--server <url>', 'tidemark server URL (env TIDEMARK_SERVER_URL)')
    .option('--client <id>', 'client id (env TIDEMARK_CLIENT_ID)')
    .option('--database-id <uuid>', 'database id from registration (env TIDEMARK_DATABASE_ID)')
    .option('--api-key <key>', 'API key from registration (env TIDEMARK_API_KEY)')
    .option('--tables <list>', 'comma-separated tables (default: every tracked table)')
    .option('--log-level <level>', 'debug, info, warn, error or silent');
}

export interface AgentFlags {
  config?: string;
  database?: string;
  server?: string;
  client?: string;
  databaseId?: string;
  apiKey?: string;
  tables?: string;
  logLevel?: string;
  schedule?: string;
  metricsListen?: string;
}

/** Splits a comma list, respecting double quotes ("a,b".c). */
export function splitList(text: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (const ch of text) {
    if (ch === '"') quoted = !quoted;
    if (ch === ',' && !quoted) {
      if (cur.trim()) out.push(cur.trim());
      cur = '';
    } else cur += ch;
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}

/**
 * Where the agent's config file is when none is named: `/etc/tidemark/agent.yaml`, or
 * `%ProgramData%\tidemark\agent.yaml` on Windows. `TIDEMARK_CONFIG` overrides it.
 */
export function defaultConfigPath(env: Readonly<Record<string, string | undefined>>, platform: NodeJS.Platform = process.platform): string {
  if (env.TIDEMARK_CONFIG) return env.TIDEMARK_CONFIG;
  return platform === 'win32' ? win32.join(env.ProgramData ?? 'C:\\ProgramData', 'tidemark', 'agent.yaml') : posix.join('/etc', 'tidemark', 'agent.yaml');
}

/**
 * The config file a command reads: `--config`, else `TIDEMARK_CONFIG`, else the default location
 * when a file is there (none is fine: flags and TIDEMARK_* variables may say everything).
 */
export function configFileFrom(
  flag: string | undefined,
  env: Readonly<Record<string, string | undefined>>,
  exists: (file: string) => boolean = existsSync,
): string | undefined {
  if (flag) return flag;
  if (env.TIDEMARK_CONFIG) return env.TIDEMARK_CONFIG;
  const file = defaultConfigPath(env);
  return exists(file) ? file : undefined;
}

export function agentConfigFrom(flags: AgentFlags, env: NodeJS.ProcessEnv, extra: Record<string, unknown> = {}): Readonly<AgentConfig> {
  return loadAgentConfig({
    file: configFileFrom(flags.config, env),
    env,
    flags: {
      databaseUrl: flags.database,
      serverUrl: flags.server,
      clientId: flags.client,
      databaseId: flags.databaseId,
      apiKey: flags.apiKey,
      tables: flags.tables ? splitList(flags.tables) : undefined,
      logLevel: flags.logLevel,
      schedule: flags.schedule,
      metricsListen: flags.metricsListen,
      ...extra,
    },
  });
}

/** Reads a PEM file named in the config (tls.caFile …), or fails naming the key. */
function pemFile(file: string | undefined, key: string): string | undefined {
  if (file === undefined) return undefined;
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`${key}: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
}

/** How the agent reaches the server: the proxy variables of the environment, the config's TLS files. */
export function networkFrom(
  tls: { caFile?: string | undefined; certFile?: string | undefined; keyFile?: string | undefined },
  env: NodeJS.ProcessEnv,
): TransportOptions {
  return {
    proxy: proxySettingsFrom(env),
    tls: { ca: pemFile(tls.caFile, 'tls.caFile'), cert: pemFile(tls.certFile, 'tls.certFile'), key: pemFile(tls.keyFile, 'tls.keyFile') },
  };
}

/**
 * The agent's remote: HTTP(S) to the configured server, through the environment's proxy, with the
 * config's TLS files, and the API key re-read from the config file after a `rotate-key`.
 */
export function remoteFor(config: Readonly<AgentConfig>, flags: { config?: string | undefined } = {}): RemoteFactory {
  return httpRemoteFactory(config, networkFrom(config.tls, process.env), fileKeyProvider(configFileFrom(flags.config, process.env), config.apiKey));
}

/** `register` and `resync`: the server and admin key from flags, TIDEMARK_* env or a YAML file. */
export function adminConfigFrom(flags: { config?: string; server?: string; adminKey?: string }): { serverUrl: string; adminKey: string } {
  return loadAdminConfig({ file: flags.config ?? process.env.TIDEMARK_CONFIG, env: process.env, flags: { serverUrl: flags.server, adminKey: flags.adminKey } });
}

/** `track` and `untrack`: the local database from flags, TIDEMARK_* env or a YAML file. */
export function databaseUrlFrom(flags: { config?: string; database?: string }): string {
  return loadTrackConfig({ file: configFileFrom(flags.config, process.env), env: process.env, flags: { databaseUrl: flags.database } }).databaseUrl;
}

export function logger(level: string | undefined, fallback: LogLevel, fd: 1 | 2): Logger {
  const allowed: LogLevel[] = ['debug', 'info', 'warn', 'error', 'silent'];
  if (level !== undefined && !allowed.includes(level as LogLevel)) throw new ConfigError(`invalid --log-level ${level}: use ${allowed.join(', ')}`);
  return createLogger((level as LogLevel | undefined) ?? fallback, fd);
}

/**
 * The local pool. Each table run holds a connection for its snapshot and needs another for state
 * writes, and the agent lock holds one: two per concurrent table plus two, or runs could wait on
 * each other for a connection forever.
 */
export function localPool(url: string, log: Logger, application: string, concurrency = 1): pg.Pool {
  return createPool({ connectionString: url, max: 2 * concurrency + 2, applicationName: application }, log);
}

/** Resolves on SIGINT or SIGTERM. */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (s: NodeJS.Signals): void => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve(s);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}

/** Which database a command works on, so a database error says which side failed. */
export type DatabaseSide = 'local database' | 'cloud database';

/**
 * One line for a human: the message, without stack or cause chains. `side` names the database the
 * command works on (the agent commands: local; the server: cloud); a database error is prefixed
 * with it and keeps its TM_* code.
 */
export function describeError(e: unknown, side?: DatabaseSide): { line: string; exitCode: number } {
  if (e instanceof ExitError) return { line: e.message, exitCode: e.exitCode };
  if (e instanceof ConfigError) return { line: e.message, exitCode: EXIT_CONFIG };
  const prefix = side ? `${side}: ` : '';
  if (e instanceof TidemarkError) return { line: `${e.code.startsWith('TM_DB_') ? prefix : ''}${e.message} [${e.code}]`, exitCode: EXIT_FAILURE };
  const err = toError(e) as Error & { code?: unknown };
  if (typeof err.code === 'string' && /^[0-9A-Z]{5}$/.test(err.code)) {
    // A raw driver error keeps its TM_* code (28P01 is TM_DB_AUTH_FAILED), from the one SQLSTATE table.
    return { line: `${prefix || 'database error: '}${err.message} [${classifyPgError(err).code}] (SQLSTATE ${err.code})`, exitCode: EXIT_FAILURE };
  }
  if (typeof err.code === 'string' && classifyPgError(err).class === 'unavailable')
    return { line: `${prefix}${err.message} (${err.code}) [${ErrorCode.DB_UNAVAILABLE}]`, exitCode: EXIT_FAILURE };
  if (typeof err.code === 'string' && err.code.startsWith('E')) return { line: `${err.message} (${err.code})`, exitCode: EXIT_FAILURE };
  return { line: err.message, exitCode: EXIT_FAILURE };
}
