/**
 * The messages of enrollment and key management (README, Wire protocol): enrollment tokens, a
 * registration authenticated by a token, key rotation with an overlap window, revocation and
 * deregistration. Zod schemas with inferred types, like admin-messages.ts.
 */
import { z } from 'zod';

import { clientIdSchema, databaseIdSchema } from './identifiers.js';

/** Longest an enrollment token may live: 90 days, in seconds. */
export const MAX_ENROLLMENT_SECONDS = 90 * 24 * 3600;
/** Most registrations one token may allow. */
export const MAX_ENROLLMENT_USES = 10_000;
/** Longest overlap window of a rotation (old and new key both work): 30 days, in seconds. */
export const MAX_OVERLAP_SECONDS = 30 * 24 * 3600;
/** Overlap window when the rotation does not say: one hour, in seconds. */
export const DEFAULT_OVERLAP_SECONDS = 3600;

/** POST /v1/admin/customers/{clientId}/enrollment-tokens */
export const enrollmentTokenRequestSchema = z.object({
  /** Seconds the token stays valid, 1 to 90 days. */
  expiresSeconds: z.number().int().min(1).max(MAX_ENROLLMENT_SECONDS),
  /** Registrations it allows (default 1). */
  uses: z.number().int().min(1).max(MAX_ENROLLMENT_USES).default(1),
});
export type EnrollmentTokenRequest = z.input<typeof enrollmentTokenRequestSchema>;

export const enrollmentTokenResultSchema = z.object({
  clientId: clientIdSchema,
  /** Shown once; the server keeps only its hash. */
  token: z.string().min(1),
  expiresAt: z.string(),
  uses: z.number().int(),
});
export type EnrollmentTokenResult = z.infer<typeof enrollmentTokenResultSchema>;

/** POST /v1/enroll (Authorization: Bearer <enrollment token>): registers a database; answers like the admin registration. */
export const enrollRequestSchema = z.object({ name: z.string().min(1).max(200) });
export type EnrollRequest = z.infer<typeof enrollRequestSchema>;

/** POST /v1/customers/{c}/databases/{d}/keys (current key): a new key, pending until confirmed. */
export const issuedKeySchema = z.object({
  /** Shown once; it authenticates at once, and becomes the database's key when confirmed. */
  apiKey: z.string().min(1),
});
export type IssuedKey = z.infer<typeof issuedKeySchema>;

/** POST /v1/customers/{c}/databases/{d}/keys/confirm (the new key): the other keys retire after the overlap. */
export const confirmKeyRequestSchema = z.object({
  overlapSeconds: z.number().int().min(0).max(MAX_OVERLAP_SECONDS).default(DEFAULT_OVERLAP_SECONDS),
});
export type ConfirmKeyRequest = z.input<typeof confirmKeyRequestSchema>;

export const confirmKeyResultSchema = z.object({
  /** Other keys that stop working at `retireAt` (now when the overlap is 0). */
  keysRetiring: z.number().int(),
  retireAt: z.string(),
});
export type ConfirmKeyResult = z.infer<typeof confirmKeyResultSchema>;

/** POST /v1/admin/customers/{c}/databases/{d}/keys/revoke: every key stops now; a new one is issued. */
export const revokeKeysResultSchema = z.object({
  clientId: clientIdSchema,
  databaseId: databaseIdSchema,
  keysRevoked: z.number().int(),
  apiKey: z.string().min(1),
});
export type RevokeKeysResult = z.infer<typeof revokeKeysResultSchema>;

/** DELETE /v1/admin/customers/{c}/databases/{d}: the database, its keys, catalog rows and replica rows. */
export const deregisterResultSchema = z.object({
  clientId: clientIdSchema,
  databaseId: databaseIdSchema,
  tables: z.array(z.string()),
  rowsDeleted: z.number().int(),
});
export type DeregisterResult = z.infer<typeof deregisterResultSchema>;
