/**
 * The zod schemas of request bodies and query strings, and `parse`, which turns a failed parse into
 * a 400 naming every bad path. (The wire types themselves live in shared/protocol.ts.)
 */
import { z } from 'zod';

import { ErrorCode, ProtocolError } from '../shared/errors.js';
import { CLIENT_ID_PATTERN, MAX_BUCKET_BITS, UUID_PATTERN } from '../shared/protocol.js';

const version = z.string().regex(/^\d{1,20}$/, 'a decimal version');
const keyText = z.array(z.string()).min(1).max(32);
const bound = z.object({ version, key: keyText.nullable() });
const range = z.object({ lower: bound.nullable(), lowerExclusive: z.boolean().optional(), upper: bound.nullable() });

export const manifestSchema = z
  .object({
    mode: z.enum(['count', 'hash']),
    range,
    level: z.enum(['summary', 'buckets', 'rows']),
    hashKind: z.enum(['record', 'text']).optional(),
    bucketBits: z.number().int().min(0).max(MAX_BUCKET_BITS).optional(),
    within: z
      .object({
        bits: z.number().int().min(0).max(MAX_BUCKET_BITS),
        buckets: z.array(z.number().int().min(0)).max(2 ** MAX_BUCKET_BITS),
      })
      .optional(),
    buckets: z
      .array(z.number().int().min(0))
      .max(2 ** MAX_BUCKET_BITS)
      .optional(),
  })
  .refine((m) => m.level === 'summary' || m.bucketBits !== undefined, 'bucketBits is required for levels buckets and rows')
  .refine((m) => m.level !== 'rows' || (m.buckets ?? []).every((b) => b < 2 ** (m.bucketBits ?? 0)), 'buckets must be below 2^bucketBits');

export const deleteSchema = z.union([
  z.object({ keys: z.array(z.object({ key: keyText, version })).max(1_000_000) }),
  z.object({ aboveVersion: version }),
  z.object({ all: z.literal(true) }),
]);

const columnSchema = z.object({ name: z.string(), type: z.string(), notNull: z.boolean() });
export const declarationSchema = z.object({ columns: z.array(columnSchema).min(1).max(1600), keyColumns: z.array(z.string()).min(1) });

export const resyncReportSchema = z.object({
  status: z.enum(['running', 'done', 'failed']),
  progress: z.number().min(0).max(1),
  rowsRepaired: z.number().int().min(0),
  error: z.string().max(4000).optional(),
});

export const settleSchema = z.object({
  settledVersion: version.optional(),
  settledXmax: version.optional(),
  settledXip: z
    .string()
    .regex(/^(\d{1,20}(,\d{1,20})*)?$/)
    .optional(),
  maxModified: z.iso.datetime({ offset: true }).optional(),
  insertOnly: z.enum(['true', 'false']).optional(),
});

export const registerSchema = z.object({ name: z.string().min(1).max(200) });
export const resyncRequestSchema = z.object({ tables: z.array(z.string()).optional() }).optional();
export const clientIdSchema = z.string().regex(CLIENT_ID_PATTERN, 'lower-case letters, digits, - and _');
export const databaseIdSchema = z.string().regex(UUID_PATTERN, 'a UUID');

export function parse<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const r = schema.safeParse(value);
  if (!r.success) {
    const issues = r.error.issues.map((i) => `${i.path.join('.') || what}: ${i.message}`).join('; ');
    throw new ProtocolError(ErrorCode.REQUEST_INVALID, 400, `invalid ${what}: ${issues}`);
  }
  return r.data;
}
