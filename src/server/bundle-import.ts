/**
 * Applies a verified offline bundle (bundle-reader.ts checked every byte first) through the same
 * TenantStore calls as online runs, so it has their guarantees: each rows frame is one upload (a
 * batch whole or not at all, the store's upsert), deletions are conditional on (key, version) like
 * online deletes, and the table is settled at the bundle's snapshot. Deletions by anti-entropy:
 * for each key set, the cloud rows of those buckets whose key is not in it and whose version the
 * bundle's snapshot knew (committed before it) are gone at the site. A bundle whose sequence is not
 * above the last imported one (a replay, an older bundle) changes nothing. The import holds the
 * database's single-agent lease while it applies, under a holder name of its own (so two imports
 * never share it), renewed at every frame (a long import keeps it), and checks the sequence under
 * it: it never interleaves with an online run or another import.
 */
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';

import { ErrorCode, ProtocolError } from '../shared/errors.js';
import {
  type BundleHeader,
  type BundleImportResult,
  type BundleReceipt,
  type BundleTable,
  bundleTableEndSchema,
  bundleTableSchema,
  FrameType,
} from '../shared/protocol/bundle.js';
import { type KeyRange, parseTableName, type TableName } from '../shared/protocol.js';
import { parseFrame, readFrames } from './bundle-reader.js';
import type { BundleStore } from './bundle-store.js';
import type { Tenant, TenantStore } from './tenant-store.js';

/** The lease holder name of an import: its own per import (agents use bare UUIDs). */
function importAgentId(): string {
  return `tidemark-bundle-import:${randomUUID()}`;
}
const ALL: KeyRange = { lower: null, upper: null };
/**
 * Bytes of key-set frames gathered before one check against the cloud: each check is a scan of the
 * cloud table, so fewer is faster. About 100,000 keys of ~30 bytes (the exporter's frames are about
 * that size: one frame a check); held as the frames' bytes, and PostgreSQL compares them with the
 * cloud's rows (an anti-join: PgManifests.absentKeys).
 */
const KEY_BYTES_PER_SCAN = 2 * 1024 * 1024;

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
  const replay = async (): Promise<BundleImportResult | null> => {
    const last = await bundles.lastImport(tenant);
    if (!last || BigInt(last.sequence) < BigInt(header.sequence)) return null;
    // A replay or an older bundle: nothing to do; the receipt tells the cloud as it is.
    return { ...result, matches: false, receipt: await buildReceipt(store, tenant, header, last.sequence) };
  };
  // Before the lease (a replay needs none), and again under it (another import may have finished meanwhile).
  const early = await replay();
  if (early) return early;
  const agentId = importAgentId();
  const hold = async (): Promise<void> => {
    const heldUntil = await store.acquireLease(tenant, agentId, options.leaseSeconds);
    if (heldUntil)
      throw new ProtocolError(
        ErrorCode.LEASE_HELD,
        409,
        `an agent is syncing ${tenant.clientId}/${tenant.databaseId} online or another bundle is being imported (lease until ${heldUntil.toISOString()}); import the bundle when it is done`,
      );
  };
  await hold();
  try {
    const again = await replay();
    if (again) return again;
    let current: { name: TableName; begin: BundleTable } | null = null;
    // Key sets of several frames are checked together: each check scans the cloud table once.
    // The frames' bytes are passed on as they are (the first pass checked their shape): PostgreSQL
    // reads the key sets, so they never become JavaScript objects here.
    const pendingKeys = { frames: [] as Buffer[], bytes: 0 };
    const deleteGone = async (table: { name: TableName; begin: BundleTable }): Promise<void> => {
      if (pendingKeys.frames.length === 0) return;
      const framesJson = `[${pendingKeys.frames.map((p) => p.toString('utf8')).join(',')}]`;
      pendingKeys.frames = [];
      pendingKeys.bytes = 0;
      const absent = await store.absentKeys(tenant, table.name, header.bucketBits, framesJson);
      const { snapshot } = table.begin;
      const gone = absent.filter((r) => knownTo(snapshot, r.version));
      if (gone.length > 0) result.deletes += (await store.deleteRows(tenant, table.name, { keys: gone })).rowsDeleted;
    };
    for await (const f of readFrames(options.path, options.maxRowsBytes)) {
      // Renews the lease: an import longer than leaseSeconds must not let an agent in halfway.
      await hold();
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
        pendingKeys.frames.push(f.payload);
        pendingKeys.bytes += f.payload.length;
        if (pendingKeys.bytes >= KEY_BYTES_PER_SCAN) await deleteGone(current);
      } else if (f.type === FrameType.tableEnd) {
        await deleteGone(current);
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
    // Recorded under the lease: the next import's check under it sees this one.
    result.applied = await bundles.recordImport(tenant, {
      sequence: header.sequence,
      createdAt: new Date(header.createdAt),
      rows: result.rows,
      deletes: result.deletes,
      bytes: options.bytes,
    });
  } finally {
    // Frees the lease at once (expired a second ago) so the site's agent can run right after.
    await store.acquireLease(tenant, agentId, -1);
  }
  return { ...result, receipt: await buildReceipt(store, tenant, header, header.sequence) };
}
