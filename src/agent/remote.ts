/**
 * The transport seam: what a run asks of the server, whatever carries it. `HttpRemote`
 * (http-remote.ts) speaks the wire protocol over HTTP(S); another transport (a file bundle for an
 * offline site, an in-memory one in tests) implements the same interface, and the run logic
 * (TableSync, Uploader, the manifest diff, the batch tuner) does not change.
 *
 * Failures are `RemoteError`s whose `errorClass` says what the run does about them, never how the
 * transport failed (no HTTP status here): the classes are bounded labels for metrics and history.
 */
import { type ErrorCode, TidemarkError } from '../shared/errors.js';
import type {
  DeclareResult,
  DeleteRequest,
  DeleteResult,
  IdleSettle,
  ManifestRequest,
  ManifestResponse,
  ResyncReport,
  RunReport,
  SettleParams,
  TableDeclaration,
  TableName,
  TableSummary,
  UploadResult,
} from '../shared/protocol.js';

/**
 * Why a request failed, as a low-cardinality label (metric `error_class`, tidemark.batch_history):
 *  - network: the server could not be reached (retry the same request a little later);
 *  - timeout: no answer in time (about the size: cut smaller);
 *  - too_large: the request is larger than the server accepts (cut smaller);
 *  - server_error: the server failed (about the size, or the server: cut smaller);
 *  - overloaded: the server sheds load (503 TM_SERVER_OVERLOADED): wait its Retry-After and send
 *    the same request again, no smaller (not about the size);
 *  - rejected: the server refused the rows' content (isolate and quarantine them);
 *  - conflict: an insert met existing rows, or another agent holds the lease, or the schema differs;
 *  - auth: the credentials were refused;
 *  - client_error: any other refusal of the request (a bug or a misconfiguration).
 */
export type ErrorClass = 'network' | 'timeout' | 'too_large' | 'rejected' | 'conflict' | 'auth' | 'client_error' | 'server_error' | 'overloaded';

export class RemoteError extends TidemarkError {
  constructor(
    code: ErrorCode,
    readonly errorClass: ErrorClass,
    message: string,
    options?: ErrorOptions & { retryAfterSeconds?: number | undefined },
  ) {
    super(code, message, options);
    this.retryAfterSeconds = options?.retryAfterSeconds;
  }
  /** What the server's Retry-After said (overloaded), if anything. */
  readonly retryAfterSeconds: number | undefined;
  /** Transient: the server or the link, not the data. */
  get retryable(): boolean {
    return this.errorClass === 'network' || this.errorClass === 'timeout' || this.errorClass === 'server_error' || this.errorClass === 'overloaded';
  }
}

export interface UploadOptions {
  settle?: SettleParams | undefined;
  maxModified?: string | null | undefined;
  /** The remote holds none of these rows: insert without the upsert (conflict TM_UPLOAD_CONFLICT if wrong). */
  insertOnly?: boolean | undefined;
  /** How long the batch may take, in milliseconds. */
  timeoutMs: number;
}

/** What a transport moved, for verification reports and benchmarks. */
export interface RemoteTraffic {
  requests: number;
  bytesSent: number;
  bytesReceived: number;
}

/** The server as one table run sees it. Every method rejects with a `RemoteError` when the transport or the server fails. */
export interface Remote {
  readonly traffic: RemoteTraffic;
  /**
   * Declares (or re-declares) the table; the server checks the schema, renews the lease and returns
   * its summary. With `idle`, the server also settles an idle run (`idleSettled` in the answer).
   */
  declare(table: TableName, declaration: TableDeclaration, idle?: IdleSettle): Promise<DeclareResult>;
  summary(table: TableName): Promise<TableSummary>;
  /** Applies one batch of COPY text (wire column order) whole or not at all; with `settle`, records the horizon. */
  upload(table: TableName, rows: Buffer, options: UploadOptions): Promise<UploadResult>;
  delete(table: TableName, request: DeleteRequest): Promise<DeleteResult>;
  manifest(table: TableName, request: ManifestRequest): Promise<ManifestResponse>;
  /** Has the server recompute the table's count and max version from its rows. */
  recount(table: TableName): Promise<TableSummary>;
  reportResync(table: TableName, report: ResyncReport): Promise<TableSummary>;
  /** Releases the transport's resources (kept-alive connections, open files). */
  close(): void;
  /** Sends a tick's run report (run-report.ts): one request for every table. Optional: a transport without it reports nothing. */
  report?(report: RunReport): Promise<void>;
}

/** Builds the remote of an agent once its persistent id is known (the composition roots choose the transport). */
export type RemoteFactory = (agentId: string) => Remote;
