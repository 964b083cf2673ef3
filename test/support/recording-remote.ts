/**
 * A `Remote` that records every call a run makes and can fail chosen calls with a transport-neutral
 * `RemoteError` before they reach the real remote it wraps: a test of the run logic scripts faults
 * here instead of in an HTTP proxy.
 */

import { type ErrorClass, type Remote, RemoteError, type RemoteTraffic, type UploadOptions } from '../../src/agent/remote.js';
import { ErrorCode } from '../../src/shared/errors.js';
import type {
  DeclareResult,
  DeleteRequest,
  DeleteResult,
  IdleSettle,
  ManifestRequest,
  ManifestResponse,
  ResyncReport,
  TableDeclaration,
  TableName,
  TableSummary,
  UploadResult,
} from '../../src/shared/protocol.js';

export interface RemoteCall {
  method: 'declare' | 'summary' | 'upload' | 'delete' | 'manifest' | 'recount' | 'reportResync';
  table: string;
  /** Upload: rows in the batch (0 for a settle without rows). */
  rows?: number;
  /** Upload: the body's bytes. */
  bytes?: number;
  /** Upload: carries the horizon; declare: carries an idle settle. */
  settle?: boolean;
  /** Set when the call was failed by a fault. */
  failed?: ErrorClass;
}

/** Fails the calls it matches (`times` of them; once by default). */
export interface Fault {
  match: (call: RemoteCall) => boolean;
  errorClass: ErrorClass;
  times?: number;
  /** An overloaded answer's Retry-After (seconds). */
  retryAfterSeconds?: number;
}

const CODES: Record<ErrorClass, ErrorCode> = {
  network: ErrorCode.SERVER_UNAVAILABLE,
  timeout: ErrorCode.TIMEOUT,
  too_large: ErrorCode.PAYLOAD_TOO_LARGE,
  rejected: ErrorCode.UPLOAD_REJECTED,
  conflict: ErrorCode.UPLOAD_CONFLICT,
  auth: ErrorCode.AUTH_UNAUTHENTICATED,
  client_error: ErrorCode.REQUEST_INVALID,
  server_error: ErrorCode.SERVER_UNAVAILABLE,
  overloaded: ErrorCode.SERVER_OVERLOADED,
};

function countRows(buf: Buffer): number {
  let n = 0;
  for (const b of buf) if (b === 0x0a) n++;
  return n;
}

export class RecordingRemote implements Remote {
  readonly calls: RemoteCall[] = [];
  private readonly faults: (Fault & { left: number })[] = [];
  /** Awaited before each call reaches the inner remote (or a fault): a test acts at a chosen point of a run. */
  beforeCall: ((call: RemoteCall) => Promise<void>) | null = null;

  constructor(private readonly inner: Remote) {}

  get traffic(): RemoteTraffic {
    return this.inner.traffic;
  }

  /** Fails the next call(s) that `fault.match` accepts. */
  inject(fault: Fault): void {
    this.faults.push({ ...fault, left: fault.times ?? 1 });
  }

  /** Uploads of rows (not settles) recorded so far. */
  uploads(): RemoteCall[] {
    return this.calls.filter((c) => c.method === 'upload' && (c.rows ?? 0) > 0);
  }

  private async call<T>(call: RemoteCall, run: () => Promise<T>): Promise<T> {
    this.calls.push(call);
    await this.beforeCall?.(call);
    const fault = this.faults.find((f) => f.left > 0 && f.match(call));
    if (fault) {
      fault.left--;
      call.failed = fault.errorClass;
      throw new RemoteError(CODES[fault.errorClass], fault.errorClass, `injected ${fault.errorClass} on ${call.method} ${call.table}`, {
        retryAfterSeconds: fault.retryAfterSeconds,
      });
    }
    return run();
  }

  declare(table: TableName, declaration: TableDeclaration, idle?: IdleSettle): Promise<DeclareResult> {
    return this.call({ method: 'declare', table: table.name, ...(idle ? { settle: true } : {}) }, () => this.inner.declare(table, declaration, idle));
  }
  summary(table: TableName): Promise<TableSummary> {
    return this.call({ method: 'summary', table: table.name }, () => this.inner.summary(table));
  }
  upload(table: TableName, rows: Buffer, options: UploadOptions): Promise<UploadResult> {
    return this.call({ method: 'upload', table: table.name, rows: countRows(rows), bytes: rows.length, settle: options.settle !== undefined }, () =>
      this.inner.upload(table, rows, options),
    );
  }
  delete(table: TableName, request: DeleteRequest): Promise<DeleteResult> {
    return this.call({ method: 'delete', table: table.name }, () => this.inner.delete(table, request));
  }
  manifest(table: TableName, request: ManifestRequest): Promise<ManifestResponse> {
    return this.call({ method: 'manifest', table: table.name }, () => this.inner.manifest(table, request));
  }
  recount(table: TableName): Promise<TableSummary> {
    return this.call({ method: 'recount', table: table.name }, () => this.inner.recount(table));
  }
  reportResync(table: TableName, report: ResyncReport): Promise<TableSummary> {
    return this.call({ method: 'reportResync', table: table.name }, () => this.inner.reportResync(table, report));
  }
  close(): void {
    this.inner.close();
  }
}
