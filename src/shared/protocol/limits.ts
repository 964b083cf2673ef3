/**
 * The limits of the wire protocol, named, with their units. The server refuses a request beyond
 * one of them with a 400 naming it, before doing any work (issue 14: an answer is bounded by its
 * request, and a request by these).
 */

/** Largest 64-bit signed integer: versions (xid8) travel as decimal strings up to this. */
export const MAX_VERSION = 2n ** 63n - 1n;

/** Most bucket bits a manifest may ask for (2^20 buckets). */
export const MAX_BUCKET_BITS = 20;

/**
 * Most buckets one `buckets` answer may hold (8 bytes each: 8 MiB). Buckets listed in `within` are
 * distinct and below 2^within.bits, with within.bits <= bucketBits, so an answer never holds more
 * than 2^bucketBits buckets; this names the bound.
 */
export const MAX_BUCKET_SLOTS = 2 ** MAX_BUCKET_BITS;

/** Most buckets a `rows` manifest request may list (each listed once). */
export const MAX_BUCKETS_PER_REQUEST = 65_536;

/** Most key columns a table may have (PostgreSQL's INDEX_MAX_KEYS). */
export const MAX_KEY_COLUMNS = 32;

/** Most columns a declared table may have (PostgreSQL's MaxHeapAttributeNumber). */
export const MAX_COLUMNS = 1600;

/** Most keys in one delete request. */
export const MAX_DELETE_KEYS = 1_000_000;

/** Most in-progress transaction ids a settle point may carry. */
export const MAX_XIP = 100_000;

/** Longest name part (schema, table, column) in bytes: PostgreSQL's NAMEDATALEN - 1. */
export const MAX_IDENTIFIER_BYTES = 63;

/** Longest text form of a key value in a range bound or delete, in bytes. */
export const MAX_KEY_VALUE_BYTES = 64 * 1024;

/** Most tables one resync request may name. */
export const MAX_RESYNC_TABLES = 10_000;
