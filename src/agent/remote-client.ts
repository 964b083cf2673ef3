/**
 * The agent's only access to the server: the table routes of the wire protocol over HTTP(S).
 * Failures become typed errors whose `errorClass` (a bounded label) drives retries and metrics.
 */
import { gzipSync } from 'node:zlib';

import { ErrorCode, ProtocolError, RetryableError, TidemarkError } from '../shared/errors.js';
import {
  COPY_CONTENT_TYPE,
  type DeleteRequest,
  type DeleteResult,
  type ErrorBody,
  HEADER_AGENT_ID,
  type ManifestRequest,
  type ManifestResponse,
  type ResyncReport,
  type SettleParams,
  type TableDeclaration,
  type TableName,
  type TableSummary,
  tablePath,
  type UploadResult,
} from '../shared/protocol.js';

/** Why a request failed, as a low-cardinality label. */
export type ErrorClass = 'network' | 'timeout' | 'too_large' | 'rejected' | 'conflict' | 'auth' | 'client_error' | 'server_error';

export class RemoteError extends TidemarkError {
  constructor(
    code: ErrorCode,
    readonly errorClass: ErrorClass,
    readonly status: number | null,
    message: string,
    options?: ErrorOptions,
  ) {
    super(code, message, options);
  }
  /** Transient: the server or the link, not the data. */
  get retryable(): boolean {
    return this.errorClass === 'network' || this.errorClass === 'timeout' || this.errorClass === 'server_error';
  }
}

export interface RemoteOptions {
  serverUrl: string;
  clientId: string;
  databaseId: string;
  apiKey: string;
  agentId: string;
  gzip: boolean;
}

export interface UploadOptions {
  settle?: SettleParams | undefined;
  maxModified?: string | null | undefined;
  timeoutMs: number;
}

const JSON_TIMEOUT_MS = 120_000;

export class HttpRemote {
  private readonly base: string;
  /** Bytes sent and requests made, for verification reports and benchmarks. */
  readonly traffic = { requests: 0, bytesSent: 0, bytesReceived: 0 };

  constructor(private readonly options: RemoteOptions) {
    this.base = options.serverUrl.replace(/\/+$/, '');
  }

  private url(table: TableName, suffix = '', query?: URLSearchParams): string {
    const q = query && [...query.keys()].length ? `?${query.toString()}` : '';
    return `${this.base}${tablePath(this.options.clientId, this.options.databaseId, table)}${suffix}${q}`;
  }

  private async request<T>(method: string, url: string, body: Buffer | string | undefined, headers: Record<string, string>, timeoutMs: number): Promise<T> {
    let res: Response;
    this.traffic.requests++;
    this.traffic.bytesSent += body ? Buffer.byteLength(body) : 0;
    try {
      res = await fetch(url, {
        method,
        headers: { authorization: `Bearer ${this.options.apiKey}`, [HEADER_AGENT_ID]: this.options.agentId, ...headers },
        ...(body !== undefined ? { body } : {}),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (e) {
      const err = e as { name?: string; cause?: { code?: string; message?: string } };
      if (err.name === 'TimeoutError' || err.name === 'AbortError')
        throw new RemoteError(ErrorCode.TIMEOUT, 'timeout', null, `${method} ${url} timed out after ${timeoutMs} ms`, { cause: e });
      throw new RemoteError(
        ErrorCode.SERVER_UNAVAILABLE,
        'network',
        null,
        `server unreachable at ${this.base}: ${err.cause?.code ?? err.cause?.message ?? String(e)}`,
        {
          cause: e,
        },
      );
    }
    const text = await res.text();
    this.traffic.bytesReceived += Buffer.byteLength(text);
    if (res.ok) return JSON.parse(text) as T;
    let code: ErrorCode = ErrorCode.INTERNAL;
    let message = `${method} ${url} answered ${res.status}`;
    try {
      const parsed = JSON.parse(text) as ErrorBody;
      code = parsed.error.code as ErrorCode;
      message = parsed.error.message;
    } catch {
      // not a tidemark error body (a proxy's page): keep the status line
    }
    const s = res.status;
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
    if (cls === 'server_error') throw new RemoteError(ErrorCode.SERVER_UNAVAILABLE, cls, s, `server error ${s}: ${message}`);
    throw new RemoteError(code, cls, s, message);
  }

  declare(table: TableName, declaration: TableDeclaration): Promise<TableSummary> {
    return this.request('PUT', this.url(table), JSON.stringify(declaration), { 'content-type': 'application/json' }, JSON_TIMEOUT_MS);
  }

  summary(table: TableName): Promise<TableSummary> {
    return this.request('GET', this.url(table), undefined, {}, JSON_TIMEOUT_MS);
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
    const headers: Record<string, string> = { 'content-type': COPY_CONTENT_TYPE };
    let body = rows;
    if (this.options.gzip && rows.length > 0) {
      body = gzipSync(rows, { level: 1 });
      headers['content-encoding'] = 'gzip';
    }
    return this.request('POST', this.url(table, '', q), body, headers, options.timeoutMs);
  }

  delete(table: TableName, request: DeleteRequest): Promise<DeleteResult> {
    return this.request('DELETE', this.url(table), JSON.stringify(request), { 'content-type': 'application/json' }, JSON_TIMEOUT_MS);
  }

  manifest(table: TableName, request: ManifestRequest): Promise<ManifestResponse> {
    return this.request('POST', this.url(table, '/manifest'), JSON.stringify(request), { 'content-type': 'application/json' }, JSON_TIMEOUT_MS);
  }

  /** Has the server recompute the table's count and max version from its rows. */
  recount(table: TableName): Promise<TableSummary> {
    return this.request('POST', this.url(table, '/recount'), '{}', { 'content-type': 'application/json' }, JSON_TIMEOUT_MS);
  }

  reportResync(table: TableName, report: ResyncReport): Promise<TableSummary> {
    return this.request('PUT', this.url(table, '/resync'), JSON.stringify(report), { 'content-type': 'application/json' }, JSON_TIMEOUT_MS);
  }
}

export function isRetryable(e: unknown): boolean {
  return (e instanceof RemoteError && e.retryable) || e instanceof RetryableError;
}

export { ProtocolError };
