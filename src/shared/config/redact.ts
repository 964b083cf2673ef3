/**
 * Secrets are marked in the config schemas, not recognised by key name: `secretString()` for keys
 * and tokens (printed as `***`), `connectionString()` for database connection strings (printed
 * with the password masked). `redactConfig` walks a schema beside a value and masks what is marked,
 * at any depth, so a new secret key is redacted by declaring it with the right type.
 */
import { z } from 'zod';

import { connectionStringProblem, redactConnectionString } from '../connection-string.js';

export interface RedactionMark {
  /** `secret`: the whole value is hidden; `connection`: only the password inside it. */
  redact: 'secret' | 'connection';
}

/** The schemas marked as secrets. */
export const configSecrets = z.registry<RedactionMark>();

/** A secret string (API key, admin key, token): never printed. */
export function secretString(min = 1, message?: string): z.ZodString {
  return z.string().min(min, message).register(configSecrets, { redact: 'secret' });
}

/** A database connection string, URL or libpq keyword/value form; printed with its password masked. */
export function connectionString(): z.ZodString {
  return z
    .string()
    .min(1)
    .refine((s) => connectionStringProblem(s) === null, { error: (issue) => connectionStringProblem(String(issue.input)) ?? 'invalid connection string' })
    .register(configSecrets, { redact: 'connection' });
}

type AnySchema = z.core.$ZodType;

/** The mark of a schema or of any wrapper layer around it (optional, default, prefault, pipe …). */
function markOf(schema: AnySchema): RedactionMark | undefined {
  for (let s: AnySchema | undefined = schema; s; s = innerOf(s)) {
    const mark = configSecrets.get(s as z.ZodType);
    if (mark) return mark;
  }
  return undefined;
}

/** The schema a wrapper wraps, or undefined for a leaf, object or array. */
export function innerOf(schema: AnySchema): AnySchema | undefined {
  const def = schema._zod.def as { type: string; innerType?: AnySchema; in?: AnySchema };
  if (def.innerType) return def.innerType;
  if (def.type === 'pipe') return def.in;
  return undefined;
}

/** The object shape under any wrappers, or undefined when the schema is not an object. */
export function shapeOf(schema: AnySchema): Readonly<Record<string, AnySchema>> | undefined {
  for (let s: AnySchema | undefined = schema; s; s = innerOf(s)) {
    const def = s._zod.def as { type: string; shape?: Record<string, AnySchema> };
    if (def.type === 'object' && def.shape) return def.shape;
  }
  return undefined;
}

/** A copy of `value` with every value of a marked schema masked. */
export function redactConfig(schema: AnySchema, value: unknown): unknown {
  const mark = markOf(schema);
  if (mark && typeof value === 'string') return mark.redact === 'secret' ? '***' : redactConnectionString(value);
  const shape = shapeOf(schema);
  if (shape && typeof value === 'object' && value !== null && !Array.isArray(value))
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, shape[k] ? redactConfig(shape[k], v) : v]));
  return value;
}
