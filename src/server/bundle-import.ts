/**
 * Applies a verified offline bundle (bundle-reader.ts checked every byte first) through the same
 * TenantStore calls as online runs, so it has their guarantees: each rows frame is one upload (a
 * batch whole or not at all, the store's upsert), deletions are conditional on (key, version) like
 * online deletes, and the table is settled at the bundle's snapshot. Deletions by anti-entropy:
 * for each key set, the cloud rows of those buckets whose key is not in it and whose version the
 * bundle's snapshot knew (committed before it) are gone at the site. A bundle whose sequence is not
 * above the last imported one (a replay, an older bundle) changes nothing. The import holds the
 * database's single-agent lease while it applies, so it never interleaves with an online run.
 */
import { Readable } from 'node:stream';

import { ErrorCode, ProtocolError } from '../shared/errors.js';
import {
  type BundleHeader,
  type BundleImportResult,
  type BundleReceipt,
  type BundleTable,
  bundleKeysSchema,
  bundleTableEndSchema,
  bundleTableSchema,
  FrameType,
} from '../shared/protocol/bundle.js';
import { type KeyRange, type ManifestRequest, parseTableName, type TableName } from '../shared/protocol.js';
import { parseFrame, readFrames } from './bundle-reader.js';
import type { BundleStore } from './bundle-store.js';
import type { Tenant, TenantStore } from './tenant-store.js';

/** The lease holder name of imports (never an agent id: agents use UUIDs). */
const IMPORT_AGENT_ID = 'tidemark-bundle-import';
const ALL: KeyRange = { lower: null, upper: null };

export interface ApplyOptions {
  store: TenantStore;
  bundles: BundleStore;
  path: string;
  header: BundleHeader;
  bytes: number;
  maxRowsBytes: number;
  leaseSeconds: number;
}

/** Whether a version was committed and visible in the snapshot (below xmax, not in progress). */
function knownTo(snapshot: BundleTable['snapshot'], version: string): boolean {
  return BigInt(version) < BigInt(snapshot.xmax) && !snapshot.xip.includes(version);
}

async function bucketHashes(store: TenantStore, tenant: Tenant, table: TableName, bits: number): Promise<string> {
  const answer = await store.manifest(tenant, table, { mode: 'hash', range: ALL, hashKind: 'text', level: 'buckets', bucketBits: bits });
  return answer.bucketHashes ?? '';
}

/** The cloud's summaries and coarse bucket hashes of the bundle's tables: the site's next export starts from it. */
export async function buildReceipt(store: TenantStore, tenant: Tenant, header: BundleHeader, sequence: string): Promise<BundleReceipt> {
  const tables: BundleReceipt['tables'] = [];
  for (const label of header.tables) {
    const name = parseTableName(label);
    try {
      tables.push({ table: label, summary: await store.summary(tenant, name), bucketHashes: await bucketHashes(store, tenant, name, header.bucketBits) });
    } catch (e) {
      // A table never declared on the cloud: the next export sends it whole.
      if (e instanceof ProtocolError && e.status === 404) continue;
      throw e;
    }
  }
  return {
    format: 1,
    clientId: tenant.clientId,
    databaseId: tenant.databaseId,
    sequence,
    importedAt: new Date().toISOString(),
    bucketBits: header.bucketBits,
    tables,
  };
}

export async function applyBundle(options: ApplyOptions): Promise<BundleImportResult> {
  const { store, bundles, header } = options;
  const tenant: Tenant = { clientId: header.clientId, databaseId: header.databaseId };
  const result: Omit<BundleImportResult, 'receipt'> = {
    clientId: tenant.clientId,
    databaseId: tenant.databaseId,
    sequence: header.sequence,
    applied: false,
    tables: header.tables.length,
    rows: 0,
    deletes: 0,
    bytes: options.bytes,
    matches: true,
  };
  const last = await bundles.lastImport(tenant);
  if (last && BigInt(last.sequence) >= BigInt(header.sequence)) {
    // A replay or an older bundle: nothing to do; the receipt tells the cloud as it is.
    return { ...result, matches: false, receipt: await buildReceipt(store, tenant, header, last.sequence) };
  }
  const heldUntil = await store.acquireLease(tenant, IMPORT_AGENT_ID, options.leaseSeconds);
  if (heldUntil)
    throw new ProtocolError(
      ErrorCode.LEASE_HELD,
      409,
      `an agent is syncing ${tenant.clientId}/${tenant.databaseId} online (lease until ${heldUntil.toISOString()}); import the bundle when it stops`,
    );
  try {
    let current: { name: TableName; begin: BundleTable } | null = null;
    for await (const f of readFrames(options.path, options.maxRowsBytes)) {
      if (f.type === FrameType.table) {
        const begin = parseFrame(bundleTableSchema, f, 'table frame');
        const name = parseTableName(begin.table);
        await store.declareTable(tenant, name, begin.declaration);
        current = { name, begin };
      } else if (!current) {
        // header and MAC frames, checked by verifyBundle
      } else if (f.type === FrameType.rows) {
        const uploaded = await store.upload(tenant, current.name, Readable.from([f.payload]), {});
        result.rows += uploaded.rowsReceived;
      } else if (f.type === FrameType.keys) {
        const keys = parseFrame(bundleKeysSchema, f, 'key set');
        const request: ManifestRequest = { mode: 'count', range: ALL, hashKind: 'text', level: 'rows', bucketBits: header.bucketBits, buckets: keys.buckets };
        const cloud = (await store.manifest(tenant, current.name, request)).rows ?? [];
        const local = new Set(keys.rows.map((r) => JSON.stringify(r[0])));
        const snapshot = current.begin.snapshot;
        const gone = cloud.filter((r) => !local.has(JSON.stringify(r[0])) && knownTo(snapshot, r[1])).map((r) => ({ key: r[0], version: r[1] }));
        if (gone.length > 0) result.deletes += (await store.deleteRows(tenant, current.name, { keys: gone })).rowsDeleted;
      } else if (f.type === FrameType.tableEnd) {
        const end = parseFrame(bundleTableEndSchema, f, 'table end');
        const { snapshot } = current.begin;
        await store.upload(tenant, current.name, Readable.from([]), {
          settle: { settledVersion: snapshot.xmin, settledXmax: snapshot.xmax, settledXip: snapshot.xip },
          ...(end.maxModified ? { maxModified: end.maxModified } : {}),
        });
        if ((await bucketHashes(store, tenant, current.name, header.bucketBits)) !== end.bucketHashes) result.matches = false;
        current = null;
      }
    }
  } finally {
    // Frees the lease at once (expired a second ago) so the site's agent can run right after.
    await store.acquireLease(tenant, IMPORT_AGENT_ID, -1);
  }
  result.applied = await bundles.recordImport(tenant, {
    sequence: header.sequence,
    createdAt: new Date(header.createdAt),
    rows: result.rows,
    deletes: result.deletes,
    bytes: options.bytes,
  });
  return { ...result, receipt: await buildReceipt(store, tenant, header, header.sequence) };
}
