/**
 * Manifest requests and answers (POST .../tables/{table}/manifest; docs: Manifests). A request's
 * answer is bounded by the request itself, and the request by the limits: a `buckets` answer is 8
 * bytes per bucket of at most MAX_BUCKET_SLOTS, bucket lists hold each bucket once, and range
 * bounds carry one text value per key column.
 */
import { z } from 'zod';

import { versionSchema } from './identifiers.js';
import { MAX_BUCKET_BITS, MAX_BUCKET_SLOTS, MAX_BUCKETS_PER_REQUEST } from './limits.js';
import { keyTextSchema } from './table-messages.js';

/** A point in (version, key) order. `key` holds the key columns' text forms, or is null for "the version alone". */
export const boundSchema = z.object({ version: versionSchema, key: keyTextSchema.nullable() });
export type Bound = z.infer<typeof boundSchema>;

/**
 * A half-open (version, key) range: from `lower` (inclusive, or exclusive when `lowerExclusive`)
 * up to `upper` (exclusive). A null bound is unbounded. A bound with a null key means
 * `version >= v` (lower) or `version < v` (upper). Both bounds' keys, when given, have the same
 * length: the table's number of key columns (the server checks that against the table).
 */
export const keyRangeSchema = z
  .object({ lower: boundSchema.nullable(), lowerExclusive: z.boolean().optional(), upper: boundSchema.nullable() })
  .refine((r) => !r.lower?.key || !r.upper?.key || r.lower.key.length === r.upper.key.length, {
    message: 'the lower and upper bounds must carry the same number of key values',
  });
export type KeyRange = z.infer<typeof keyRangeSchema>;

/**
 * What a manifest compares: `count` compares rows' identities (key and version: finds deletes and
 * missed rows); `hash` compares their content too (the row's canonical text).
 */
export const manifestModeSchema = z.enum(['count', 'hash']);
export type ManifestMode = z.infer<typeof manifestModeSchema>;

/**
 * How a row's hash is computed on both sides: `record` hashes each column with its type's own
 * extended hash function (`hash_record_extended`, PostgreSQL 14+; fast, equal values hash equally);
 * `text` hashes the row's canonical text (any type; slower). The agent picks `record` when every
 * column type supports it, and falls back to `text` when either side cannot.
 */
export const hashKindSchema = z.enum(['record', 'text']);
export type HashKind = z.infer<typeof hashKindSchema>;

const bucketBitsSchema = z.number().int().min(0).max(MAX_BUCKET_BITS);

/** A list of distinct bucket numbers: a repeated bucket would repeat work and answer for nothing. */
const bucketListSchema = z
  .array(z.number().int().min(0))
  .max(MAX_BUCKETS_PER_REQUEST, `at most ${MAX_BUCKETS_PER_REQUEST} buckets per request (MAX_BUCKETS_PER_REQUEST)`)
  .refine((list) => new Set(list).size === list.length, 'each bucket may be listed once');

/**
 * A description of the rows of `range`:
 *  - `summary`: the range's row count and the sum of its row hashes modulo 2^64;
 *  - `buckets`: the rows are spread over 2^bucketBits buckets by a hash of their key, and the answer
 *    is each bucket's hash sum, so both sides partition alike without exchanging boundaries;
 *    `within` restricts it to the rows of some buckets of a coarser level (bits <= bucketBits);
 *  - `rows`: the rows (key, version, hash) of the listed buckets.
 */
export const manifestRequestSchema = z
  .object({
    mode: manifestModeSchema,
    range: keyRangeSchema,
    level: z.enum(['summary', 'buckets', 'rows']),
    /** Default `text`. */
    hashKind: hashKindSchema.optional(),
    /** Buckets are 2^bucketBits (levels buckets and rows), at most 2^MAX_BUCKET_BITS. */
    bucketBits: bucketBitsSchema.optional(),
    /** Level rows: the buckets whose rows to return, each below 2^bucketBits, each once. */
    buckets: bucketListSchema.optional(),
    /** Level buckets: only rows in these buckets of a coarser partition (2^bits). */
    within: z.object({ bits: bucketBitsSchema, buckets: bucketListSchema }).optional(),
  })
  .superRefine((m, ctx) => {
    const bad = (path: string, message: string): void => ctx.addIssue({ code: 'custom', path: [path], message });
    if (m.level !== 'summary' && m.bucketBits === undefined) bad('bucketBits', 'bucketBits is required for levels buckets and rows');
    const bits = m.bucketBits ?? 0;
    if (m.buckets !== undefined) {
      if (m.level !== 'rows') bad('buckets', 'buckets is for level rows only');
      else if (m.buckets.some((b) => b >= 2 ** bits)) bad('buckets', 'buckets must be below 2^bucketBits');
    }
    const within = m.within;
    if (within !== undefined) {
      if (m.level !== 'buckets') bad('within', 'within is for level buckets only');
      else if (within.bits > bits) bad('within', 'within.bits must not exceed bucketBits');
      else if (within.buckets.some((b) => b >= 2 ** within.bits)) bad('within', 'within.buckets must be below 2^within.bits');
      else if (within.buckets.length * 2 ** (bits - within.bits) > MAX_BUCKET_SLOTS)
        bad('within', `the answer would hold more than ${MAX_BUCKET_SLOTS} buckets (MAX_BUCKET_SLOTS)`);
    }
  });
export type ManifestRequest = z.infer<typeof manifestRequestSchema>;

/** One row in a row-level manifest: key text forms, version, row hash. */
export const manifestRowSchema = z.tuple([z.array(z.string()), z.string(), z.string()]);
export type ManifestRow = z.infer<typeof manifestRowSchema>;

export const manifestResponseSchema = z.object({
  /** Levels summary and buckets: rows counted. */
  count: z.number().optional(),
  /** Level summary: sum of row hashes modulo 2^64, decimal. */
  hash: z.string().optional(),
  /** Level buckets: base64 of 8 bytes (little-endian hash sum) per bucket, in bucket order. */
  bucketHashes: z.string().optional(),
  /** Level rows. */
  rows: z.array(manifestRowSchema).optional(),
});
export type ManifestResponse = z.infer<typeof manifestResponseSchema>;
