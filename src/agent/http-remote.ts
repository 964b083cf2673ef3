/**
 * `Remote` over HTTP(S): the table routes of the wire protocol. HTTP statuses end here: each
 * failure becomes a transport-neutral `RemoteError` (remote.ts) whose `errorClass` drives retries,
 * quarantine and metrics.
 */
import { gzipSync } from 'node:zlib';
import type { z } from 'zod';
import type { AgentConfig } from '../shared/config/agent-config.js';
import { ErrorCode } from '../shared/errors.js';
import {
  buildPath,
  COPY_CONTENT_TYPE,
  type DeclareResult,
  type DeleteRequest,
  type DeleteResult,
  declareResultSchema,
  deleteResultSchema,
  errorBodySchema,
  HEADER_AGENT_ID,
  type IdleSettle,
  type ManifestRequest,
  type ManifestResponse,
  manifestResponseSchema,
  parseJsonBody,
  type ResyncReport,
  type RunReport,
  runReportResultSchema,
  type TableDeclaration,
  type TableName,
  type TableSummary,
  tablePath,
  tableSummarySchema,
  type UploadResult,
  uploadResultSchema,
} from '../shared/protocol.js';
import { HttpTransport, type TransportOptions } from './http-transport.js';
import { type ErrorClass, type Remote, RemoteError, type RemoteFactory, type RemoteTraffic, type UploadOptions } from './remote.js';

export interface HttpRemoteOptions {
  serverUrl: string;
  clientId: string;
  databaseId: string;
  /** The key, or where to read it before each request (a key rotated in the config file while the agent runs). */
  apiKey: string | (() => string);
  agentId: string;
  gzip: boolean;
  /** Proxy and TLS settings (http-transport.ts); default: direct, the system's CAs. */
  network?: TransportOptions | undefined;
}

const JSON_TIMEOUT_MS = 120_000;

export class HttpRemote implements Remote {
  private readonly base: string;
  /** node:http(s) with kept-alive connections, through a proxy and with TLS settings when configured. */
  private readonly transport: HttpTransport;
  /** Bytes sent and requests made, for verification reports and benchmarks. */
  readonly traffic: RemoteTraffic = { requests: 0, bytesSent: 0, bytesReceived: 0 };

  constructor(private readonly options: HttpRemoteOptions) {
    this.base = options.serverUrl.replace(/\/+$/, '');
    this.transport = new HttpTransport(options.serverUrl, options.network);
  }

  private url(table: TableName, suffix = '', query?: URLSearchParams): string {
    const q = query && [...query.keys()].length ? `?${query.toString()}` : '';
    return `${this.base}${tablePath(this.options.clientId, this.options.databaseId, table)}${suffix}${q}`;
  }

  private async request<S extends z.ZodType>(
    schema: S,
    method: string,
    url: string,
    body: Buffer | string | undefined,
    headers: Record<string, string>,
    timeoutMs: number,
  ): Promise<z.output<S>> {
    this.traffic.requests++;
    const payload = body === undefined ? undefined : typeof body === 'string' ? Buffer.from(body) : body;
    this.traffic.bytesSent += payload?.length ?? 0;
    let res: { status: number; text: string; retryAfter?: string | undefined };
    try {
      res = await this.send(method, url, payload, headers, timeoutMs);
    } catch (e) {
      const err = e as { name?: string; code?: string; message?: string };
      if (err.name === 'TimeoutError' || err.name === 'AbortError')
        throw new RemoteError(ErrorCode.TIMEOUT, 'timeout', `${method} ${url} timed out after ${timeoutMs} ms`, { cause: e });
      throw new RemoteError(ErrorCode.SERVER_UNAVAILABLE, 'network', `server unreachable at ${this.base}: ${err.code ?? err.message ?? String(e)}`, {
        cause: e,
      });
    }
    const { status: s, text } = res;
    this.traffic.bytesReceived += Buffer.byteLength(text);
    if (s >= 200 && s < 300) {
      try {
        return parseJsonBody(schema, text, `answer to ${method} ${url}`);
      } catch (e) {
        throw new RemoteError(ErrorCode.SERVER_UNAVAILABLE, 'server_error', `the server's answer is not what the protocol says: ${(e as Error).message}`, {
          cause: e,
        });
      }
    }
    let code: ErrorCode = ErrorCode.INTERNAL;
    let message = `${method} ${url} answered ${s}`;
    try {
      const parsed = errorBodySchema.safeParse(JSON.parse(text));
      if (parsed.success) {
        code = parsed.data.error.code as ErrorCode;
        message = parsed.data.error.message;
      }
    } catch {
      // not a tidemark error body (a proxy's page): keep the status line
    }
    if (s === 503 && code === ErrorCode.SERVER_OVERLOADED) {
      const after = Number(res.retryAfter);
      throw new RemoteError(code, 'overloaded', message, { retryAfterSeconds: Number.isFinite(after) && after >= 0 ? after : undefined });
    }
    const cls: ErrorClass =
      s === 413
        ? 'too_large'
        : s === 400 && code === ErrorCode.UPLOAD_REJECTED
          ? 'rejected'
          : s === 409
            ? 'conflict'
            : s === 401 || s === 403
              ? 'auth'
              : s >= 500 || s === 429
                ? 'server_error'
                : 'client_error';
    if (cls === 'server_error') throw new RemoteError(ErrorCode.SERVER_UNAVAILABLE, cls, `server error ${s}: ${message}`);
    throw new RemoteError(code, cls, message);
  }

  private send(
    method: string,
    url: string,
    body: Buffer | undefined,
    headers: Record<string, string>,
    timeoutMs: number,
  ): Promise<{ status: number; text: string; retryAfter?: string | undefined }> {
    return this.transport.request(
      method,
      url,
      body,
      {
        authorization: `Bearer ${typeof this.options.apiKey === 'string' ? this.options.apiKey : this.options.apiKey()}`,
        [HEADER_AGENT_ID]: this.options.agentId,
        ...headers,
      },
      timeoutMs,
    );
  }

  /** Closes kept-alive connections. */
  close(): void {
    this.transport.close();
  }

  declare(table: TableName, declaration: TableDeclaration, idle?: IdleSettle): Promise<DeclareResult> {
    const body = JSON.stringify(idle ? { ...declaration, idleSettle: idle } : declaration);
    return this.request(declareResultSchema, 'PUT', this.url(table), body, { 'content-type': 'application/json' }, JSON_TIMEOUT_MS);
  }

  summary(table: TableName): Promise<TableSummary> {
    return this.request(tableSummarySchema, 'GET', this.url(table), undefined, {}, JSON_TIMEOUT_MS);
  }

  /** Uploads one batch of COPY text; the server applies it whole or not at all. */
  upload(table: TableName, rows: Buffer, options: UploadOptions): Promise<UploadResult> {
    const q = new URLSearchParams();
    if (options.settle) {
      q.set('settledVersion', options.settle.settledVersion);
      q.set('settledXmax', options.settle.settledXmax);
      if (options.settle.settledXip.length) q.set('settledXip', options.settle.settledXip.join(','));
    }
    if (options.maxModified) q.set('maxModified', options.maxModified);
    if (options.insertOnly) q.set('insertOnly', 'true');
    const headers: Record<string, string> = { 'content-type': COPY_CONTENT_TYPE };
    let body = rows;
    if (this.options.gzip && rows.length > 0) {
      body = gzipSync(rows, { level: 1 });
      headers['content-encoding'] = 'gzip';
    }
    return this.request(uploadResultSchema, 'POST', this.url(table, '', q), body, headers, options.timeoutMs);
  }

  delete(table: TableName, request: DeleteRequest): Promise<DeleteResult> {
    return this.request(deleteResultSchema, 'DELETE', this.url(table), JSON.stringify(request), { 'content-type': 'application/json' }, JSON_TIMEOUT_MS);
  }

  manifest(table: TableName, request: ManifestRequest): Promise<ManifestResponse> {
    return this.request(
      manifestResponseSchema,
      'POST',
      this.url(table, '/manifest'),
      JSON.stringify(request),
      { 'content-type': 'application/json' },
      JSON_TIMEOUT_MS,
    );
  }

  /** Has the server recompute the table's count and max version from its rows. */
  recount(table: TableName): Promise<TableSummary> {
    return this.request(tableSummarySchema, 'POST', this.url(table, '/recount'), '{}', { 'content-type': 'application/json' }, JSON_TIMEOUT_MS);
  }

  reportResync(table: TableName, report: ResyncReport): Promise<TableSummary> {
    return this.request(tableSummarySchema, 'PUT', this.url(table, '/resync'), JSON.stringify(report), { 'content-type': 'application/json' }, JSON_TIMEOUT_MS);
  }

  async report(report: RunReport): Promise<void> {
    const path = buildPath('databaseReport', { clientId: this.options.clientId, databaseId: this.options.databaseId });
    await this.request(runReportResultSchema, 'POST', `${this.base}${path}`, JSON.stringify(report), { 'content-type': 'application/json' }, JSON_TIMEOUT_MS);
  }
}

/** The HTTP remote of an agent configured with `config` (a `RemoteFactory` for Agent.create). */
export function httpRemoteFactory(config: Readonly<AgentConfig>, network?: TransportOptions, apiKey?: () => string): RemoteFactory {
  return (agentId) =>
    new HttpRemote({
      serverUrl: config.serverUrl,
      clientId: config.clientId,
      databaseId: config.databaseId.toLowerCase(),
      apiKey: apiKey ?? config.apiKey,
      agentId,
      gzip: config.gzip,
      network,
    });
}
