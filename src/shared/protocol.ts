/**
 * The wire protocol between agent and server (DESIGN.md, Wire protocol). JSON except row data,
 * which travels as PostgreSQL COPY text (`text/tab-separated-values`, optionally gzip).
 *
 * Versions travel as decimal strings: they are 64-bit transaction ids (xid8) and JSON numbers
 * lose precision above 2^53.
 */
import { ErrorCode, ProtocolError } from './errors.js';

/** A tracked table's column as the agent reports it. `type` is `format_type()` output. */
export interface ColumnSpec {
  name: string;
  type: string;
  notNull: boolean;
}

/**
 * A table's declaration (PUT .../tables/{table}). `columns` lists every column in the wire order:
 * `tidemark_version`, then the key columns in key order, then the others. Row data (COPY text)
 * and hashes use exactly this order.
 */
export interface TableDeclaration {
  columns: ColumnSpec[];
  keyColumns: string[];
}

/** State of a forced full resync of one table, as kept by the server. */
export interface ResyncState {
  status: 'requested' | 'running' | 'done' | 'failed';
  requestedAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  /** Fraction of the table verified, 0..1. */
  progress: number;
  rowsRepaired: number;
  error: string | null;
}

/** GET/PUT .../tables/{table}: what the server holds, O(1) from its state row. */
export interface TableSummary {
  table: string;
  rowCount: number;
  /** Highest version on the server, or null when it holds no row. */
  maxVersion: string | null;
  /** Every committed local row with a version below this is on the server (DESIGN.md, Safe horizon). */
  settledVersion: string;
  /** xmax of the snapshot that settled `settledVersion`, or null. */
  settledXmax: string | null;
  /** In-progress transaction ids of that snapshot. */
  settledXip: string[];
  /** ISO time: max of the table's modified-time column, or null. */
  maxModified: string | null;
  /** When the server last applied a change or settled this table. */
  updatedAt: string | null;
  resync: ResyncState | null;
}

/** Query parameters of an upload that settle the table after its rows are applied. */
export interface SettleParams {
  settledVersion: string;
  settledXmax: string;
  settledXip: string[];
}

/** POST .../tables/{table} response. */
export interface UploadResult {
  rowsReceived: number;
  rowsInserted: number;
  rowsUpdated: number;
  summary: TableSummary;
}

/** A point in (version, key) order. `key` holds the key columns' text forms, or is null for "the version alone". */
export interface Bound {
  version: string;
  key: string[] | null;
}

/**
 * A half-open (version, key) range: from `lower` (inclusive, or exclusive when `lowerExclusive`)
 * up to `upper` (exclusive). A null bound is unbounded. A bound with a null key means
 * `version >= v` (lower) or `version < v` (upper).
 */
export interface KeyRange {
  lower: Bound | null;
  lowerExclusive?: boolean;
  upper: Bound | null;
}

/**
 * What a manifest compares: `count` compares rows' identities (key and version: finds deletes and
 * missed rows); `hash` compares their content too (the row's canonical text).
 */
export type ManifestMode = 'count' | 'hash';

/** Most bucket bits a manifest may ask for (2^20 buckets). */
export const MAX_BUCKET_BITS = 20;

/**
 * How a row's hash is computed on both sides: `record` hashes each column with its type's own
 * extended hash function (`hash_record_extended`, PostgreSQL 14+; fast, equal values hash equally);
 * `text` hashes the row's canonical text (any type; slower). The agent picks `record` when every
 * column type supports it, and falls back to `text` when either side cannot.
 */
export type HashKind = 'record' | 'text';

/**
 * POST .../tables/{table}/manifest: a description of the rows of `range` (DESIGN.md, Manifests).
 *  - `summary`: the range's row count and the sum of its row hashes modulo 2^64;
 *  - `buckets`: the rows are spread over 2^bucketBits buckets by a hash of their key, and the answer
 *    is each bucket's hash sum, so both sides partition alike without exchanging boundaries;
 *    `within` restricts it to the rows of some buckets of a coarser level;
 *  - `rows`: the rows (key, version, hash) of the listed buckets.
 */
export interface ManifestRequest {
  mode: ManifestMode;
  range: KeyRange;
  level: 'summary' | 'buckets' | 'rows';
  /** Default `text`. */
  hashKind?: HashKind;
  /** Buckets are 2^bucketBits (levels buckets and rows). */
  bucketBits?: number;
  /** Level rows: the buckets whose rows to return. */
  buckets?: number[];
  /** Level buckets: only rows in these buckets of a coarser partition (2^bits). */
  within?: { bits: number; buckets: number[] };
}

/** One row in a row-level manifest: key text forms, version, row hash. */
export type ManifestRow = [key: string[], version: string, hash: string];

export interface ManifestResponse {
  count?: number;
  /** Level summary: sum of row hashes modulo 2^64, decimal. */
  hash?: string;
  /** Level buckets: base64 of 8 bytes (little-endian hash sum) per bucket, in bucket order. */
  bucketHashes?: string;
  /** Levels summary and buckets: rows counted. */
  /** Level rows. */
  rows?: ManifestRow[];
}

/** DELETE .../tables/{table}: exactly one of the three forms. */
export type DeleteRequest = { keys: { key: string[]; version: string }[] } | { aboveVersion: string } | { all: true };

export interface DeleteResult {
  rowsDeleted: number;
  summary: TableSummary;
}

/** PUT .../tables/{table}/resync: the agent reports progress of a requested resync. */
export interface ResyncReport {
  status: 'running' | 'done' | 'failed';
  progress: number;
  rowsRepaired: number;
  error?: string;
}

/** POST /v1/admin/customers/{clientId}/databases: register. */
export interface RegisterRequest {
  name: string;
}
export interface RegisterResult {
  clientId: string;
  databaseId: string;
  /** Shown once; the server keeps only its hash. */
  apiKey: string;
}

/** POST /v1/admin/customers/{clientId}/databases/{databaseId}/resync */
export interface ResyncRequest {
  /** Tables to resync; all declared tables when absent. */
  tables?: string[];
}

export interface TenantTableInfo extends TableSummary {
  /** Seconds since the server last applied a change or settled the table. */
  secondsSinceUpdate: number | null;
}

export interface TenantInfo {
  clientId: string;
  databaseId: string;
  name: string;
  createdAt: string;
  tables: TenantTableInfo[];
}

/** Error body of every non-2xx answer. */
export interface ErrorBody {
  error: { code: string; message: string; requestId: string; details?: unknown };
}

export const HEADER_AGENT_ID = 'x-tidemark-agent-id';
export const COPY_CONTENT_TYPE = 'text/tab-separated-values';

// --- Table names -----------------------------------------------------------------------------

/** A table's identity: its schema and name, exactly as in pg_catalog. */
export interface TableName {
  schema: string;
  name: string;
}

function quoteIfNeeded(part: string): string {
  return /^[a-z_][a-z0-9_]*$/.test(part) ? part : `"${part.replaceAll('"', '""')}"`;
}

/** `public.items`, `"Wé""ird"."a.b"`: the text form used in config, CLI output and URLs. */
export function formatTableName(t: TableName): string {
  return `${quoteIfNeeded(t.schema)}.${quoteIfNeeded(t.name)}`;
}

/**
 * Parses `schema.table` (either part double-quoted when needed). Unquoted parts are folded to
 * lower case as PostgreSQL does. A bare `table` gets `defaultSchema`.
 */
export function parseTableName(text: string, defaultSchema = 'public'): TableName {
  const parts: string[] = [];
  let i = 0;
  const fail = (): never => {
    throw new ProtocolError(ErrorCode.TABLE_NAME_INVALID, 400, `invalid table name ${JSON.stringify(text)}: use schema.table`);
  };
  while (i <= text.length) {
    let part = '';
    if (text[i] === '"') {
      i++;
      for (;;) {
        if (i >= text.length) fail();
        if (text[i] === '"') {
          if (text[i + 1] === '"') {
            part += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        part += text[i];
        i++;
      }
    } else {
      const start = i;
      while (i < text.length && text[i] !== '.' && text[i] !== '"') i++;
      part = text.slice(start, i).toLowerCase();
      if (part.length === 0 || /\s/.test(part)) fail();
    }
    if (part.length === 0) fail();
    parts.push(part);
    if (i === text.length) break;
    if (text[i] !== '.') fail();
    i++;
    if (i === text.length) fail();
  }
  if (parts.length === 1) return { schema: defaultSchema, name: parts[0] as string };
  if (parts.length === 2) return { schema: parts[0] as string, name: parts[1] as string };
  return fail();
}

export function tablePath(clientId: string, databaseId: string, table: TableName): string {
  return `/v1/customers/${encodeURIComponent(clientId)}/databases/${encodeURIComponent(databaseId)}/tables/${encodeURIComponent(formatTableName(table))}`;
}

/** Client ids: lower-case letters, digits, `-` and `_`, 1 to 63 characters. */
export const CLIENT_ID_PATTERN = /^[a-z0-9][a-z0-9_-]{0,62}$/;
export const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const VERSION_COLUMN = 'tidemark_version';
export const TENANT_CLIENT_COLUMN = 'tidemark_client_id';
export const TENANT_DATABASE_COLUMN = 'tidemark_database_id';
