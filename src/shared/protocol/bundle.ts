/**
 * Offline sites (README, Offline sites): the bundle file an export writes and an import reads, and
 * the receipt an import answers. A bundle is a stream of frames after a magic line:
 *
 *   frame = type (1 byte) | payload length (4 bytes, big-endian) | payload
 *   H header (JSON, first)         T table begin (JSON)         R rows (COPY text, one batch)
 *   K key set of some buckets (JSON)   E table end (JSON)       M MAC (32 bytes, last)
 *
 * The M frame's payload is HMAC-SHA256 over every byte before it (magic and frames), under a key
 * derived from the SHA-256 of the database's API key: the server keeps that hash and can check the
 * MAC without the key, and the key cannot be recovered from a MAC. Trade-off: whoever can read the
 * server's tenant table (api_key_hash) can forge bundles for that database; it still cannot
 * authenticate online, which needs the key itself.
 */
import { createHash, createHmac, type Hmac } from 'node:crypto';

import { z } from 'zod';

import { versionSchema } from './identifiers.js';
import { tableDeclarationSchema, tableSummarySchema } from './table-messages.js';

export const BUNDLE_MAGIC = Buffer.from('TIDEMARK-BUNDLE 1\n', 'latin1');
export const BUNDLE_CONTENT_TYPE = 'application/vnd.tidemark.bundle';
export const BUNDLE_MAC_BYTES = 32;
/** Bytes of a frame's type and length. */
export const FRAME_HEADER_BYTES = 5;
/** Largest JSON frame (header, table, key set, table end). */
export const MAX_BUNDLE_JSON_FRAME_BYTES = 16 * 1024 * 1024;
/** Coarse buckets of the anti-entropy: 2^10, 8 KiB of hashes per table in a receipt. */
export const BUNDLE_BUCKET_BITS = 10;

export const FrameType = { header: 0x48, table: 0x54, rows: 0x52, keys: 0x4b, tableEnd: 0x45, mac: 0x4d } as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];
const FRAME_TYPES: ReadonlySet<number> = new Set(Object.values(FrameType));

/** The MAC key of a database's bundles: HMAC of its API key's SHA-256 with a fixed label. */
export function bundleMacKey(apiKeySha256: Buffer): Buffer {
  return createHmac('sha256', apiKeySha256).update('tidemark bundle mac v1').digest();
}

/** The SHA-256 of an API key, as the server stores it. */
export function apiKeySha256(apiKey: string): Buffer {
  return createHash('sha256').update(apiKey).digest();
}

export function bundleHmac(apiKeyHash: Buffer): Hmac {
  return createHmac('sha256', bundleMacKey(apiKeyHash));
}

export function frameHeader(type: FrameType, length: number): Buffer {
  const b = Buffer.alloc(FRAME_HEADER_BYTES);
  b.writeUInt8(type, 0);
  b.writeUInt32BE(length, 1);
  return b;
}

export function isFrameType(n: number): n is FrameType {
  return FRAME_TYPES.has(n);
}

const snapshotSchema = z.object({ xmin: versionSchema, xmax: versionSchema, xip: z.array(versionSchema) });

export const bundleHeaderSchema = z.object({
  format: z.literal(1),
  clientId: z.string().min(1),
  databaseId: z.string().uuid(),
  /** The local database's transaction horizon when the export began: grows with every export. */
  sequence: versionSchema,
  createdAt: z.iso.datetime({ offset: true }),
  tables: z.array(z.string()),
  bucketBits: z.number().int().min(0).max(16),
});
export type BundleHeader = z.infer<typeof bundleHeaderSchema>;

export const bundleTableSchema = z.object({
  table: z.string(),
  declaration: tableDeclarationSchema,
  /** The local snapshot the table was read in: rows with other versions are unknown to the bundle. */
  snapshot: snapshotSchema,
});
export type BundleTable = z.infer<typeof bundleTableSchema>;

/** The complete (key, version) set of some coarse buckets, locally: cloud rows of them not in it are deleted. */
export const bundleKeysSchema = z.object({
  buckets: z.array(z.number().int().min(0)),
  rows: z.array(z.tuple([z.array(z.string()), versionSchema])),
});
export type BundleKeys = z.infer<typeof bundleKeysSchema>;

export const bundleTableEndSchema = z.object({
  table: z.string(),
  maxModified: z.string().nullable(),
  /** Local coarse bucket hashes (mode hash, kind text): the import says whether the cloud matches. */
  bucketHashes: z.string(),
  rows: z.number().int().min(0),
});
export type BundleTableEnd = z.infer<typeof bundleTableEndSchema>;

/** What an import answers and the site keeps for its next export: the cloud after the import. */
export const bundleReceiptSchema = z.object({
  format: z.literal(1),
  clientId: z.string(),
  databaseId: z.string(),
  /** The last bundle sequence the cloud imported. */
  sequence: versionSchema,
  importedAt: z.string(),
  bucketBits: z.number().int().min(0).max(16),
  tables: z.array(z.object({ table: z.string(), summary: tableSummarySchema, bucketHashes: z.string() })),
});
export type BundleReceipt = z.infer<typeof bundleReceiptSchema>;

export const bundleImportResultSchema = z.object({
  clientId: z.string(),
  databaseId: z.string(),
  sequence: versionSchema,
  /** False when the bundle was not newer than the last one imported (a replay or an older bundle): nothing changed. */
  applied: z.boolean(),
  tables: z.number(),
  rows: z.number(),
  deletes: z.number(),
  bytes: z.number(),
  /** Every table of the bundle equals, on the cloud, what the bundle says the site held. */
  matches: z.boolean(),
  receipt: bundleReceiptSchema,
});
export type BundleImportResult = z.infer<typeof bundleImportResultSchema>;

/** GET .../bundle: the last bundle a database imported, and how old the cloud copy is by it. */
export const bundleStatusSchema = z.object({
  lastImport: z
    .object({ sequence: versionSchema, createdAt: z.string(), importedAt: z.string(), rows: z.number(), deletes: z.number(), bytes: z.number() })
    .nullable(),
  /** Seconds since the site exported the last imported bundle (the cloud copy's age), or null. */
  ageSeconds: z.number().nullable(),
});
export type BundleStatus = z.infer<typeof bundleStatusSchema>;
