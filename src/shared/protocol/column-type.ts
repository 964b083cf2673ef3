/**
 * Column type names as agents declare them (`format_type()` output): checked by grammar before any
 * SQL sees them, so a declaration can neither inject SQL nor reach PostgreSQL with a clause or a
 * type modifier it would refuse (issue 14, item 6: those were 500s).
 *
 * Accepted: an optional schema qualifier, a type name of plain words (only the words PostgreSQL's
 * own multi-word type names use: `character varying`, `double precision`, `timestamp(3) with time
 * zone`, `interval day to second` …), an optional type modifier within the type's limits, and `[]`
 * suffixes. Refused: quotes, punctuation, and any other word (`default`, `generated`, `collate`,
 * `not null`, `references` …).
 */

/** Words that may follow a type's first word: those of PostgreSQL's multi-word type names. */
const TYPE_WORDS: ReadonlySet<string> = new Set([
  'varying',
  'precision',
  'with',
  'without',
  'time',
  'zone',
  'year',
  'month',
  'day',
  'hour',
  'minute',
  'second',
  'to',
]);

const TYPE_GRAMMAR = /^(?:([a-z_][a-z0-9_$]*)\.)?([a-z_][a-z0-9_$]*)((?: [a-z]+)*)(?:\((\d{1,9})(?:,(-?\d{1,9}))?\))?((?: [a-z]+)*)((?:\[\])*)$/;

/** Longest varchar/char length PostgreSQL accepts (10485760 characters). */
const MAX_CHAR_LENGTH = 10_485_760;

/** Type modifier limits of the built-in types that take one: [min, max] of the first value, and of the second. */
const TYPMOD_LIMITS: Readonly<Record<string, readonly [min: number, max: number, scaleMin?: number, scaleMax?: number]>> = {
  character: [1, MAX_CHAR_LENGTH],
  'character varying': [1, MAX_CHAR_LENGTH],
  varchar: [1, MAX_CHAR_LENGTH],
  char: [1, MAX_CHAR_LENGTH],
  bpchar: [1, MAX_CHAR_LENGTH],
  bit: [1, 83_886_080],
  'bit varying': [1, 83_886_080],
  varbit: [1, 83_886_080],
  numeric: [1, 1000, -1000, 1000],
  decimal: [1, 1000, -1000, 1000],
  timestamp: [0, 6],
  timestamptz: [0, 6],
  time: [0, 6],
  timetz: [0, 6],
  interval: [0, 6],
};

/** Built-in types that take no type modifier (PostgreSQL refuses one). */
const NO_TYPMOD: ReadonlySet<string> = new Set([
  'smallint',
  'integer',
  'int',
  'int2',
  'int4',
  'int8',
  'bigint',
  'real',
  'float4',
  'float8',
  'double precision',
  'boolean',
  'bool',
  'text',
  'bytea',
  'date',
  'uuid',
  'json',
  'jsonb',
  'money',
  'inet',
  'cidr',
  'macaddr',
  'oid',
]);

/** Why a column type name is refused, or null when it is acceptable. */
export function typeNameProblem(name: string): string | null {
  if (name.length === 0) return 'is empty';
  if (name.length > 128) return 'is longer than 128 characters';
  const m = TYPE_GRAMMAR.exec(name);
  if (!m) return 'is not a plain type name (letters, digits, _ and $, an optional schema, one type modifier and [] suffixes)';
  const [, schema, first = '', before = '', mod1, mod2, after = ''] = m;
  for (const word of `${before}${after}`.split(' ').filter(Boolean))
    if (!TYPE_WORDS.has(word)) return `holds ${JSON.stringify(word)}, which is not part of a type name (clauses such as default or generated are not accepted)`;
  if (schema !== undefined && schema.length > 63) return 'has a schema name longer than 63 bytes';
  if (first.length > 63) return 'has a name longer than 63 bytes';
  if (mod1 === undefined) return null;
  const base = `${first}${before}`;
  if (schema === undefined || schema === 'pg_catalog') {
    if (NO_TYPMOD.has(base)) return `has a type modifier, which type ${base} does not take`;
    const limits = TYPMOD_LIMITS[base];
    if (limits) {
      const [min, max, scaleMin, scaleMax] = limits;
      const n = Number(mod1);
      if (n < min || n > max) return `has a type modifier ${n} outside ${min}..${max}`;
      if (mod2 !== undefined) {
        if (scaleMin === undefined || scaleMax === undefined) return `has two type modifiers, which type ${base} does not take`;
        const s = Number(mod2);
        if (s < scaleMin || s > scaleMax) return `has a scale ${s} outside ${scaleMin}..${scaleMax}`;
      }
      return null;
    }
  }
  // Other types (extension types such as vector(1536)) check their own modifiers; bound them anyway.
  if (Number(mod1) > MAX_CHAR_LENGTH || Math.abs(Number(mod2 ?? 0)) > MAX_CHAR_LENGTH) return `has a type modifier above ${MAX_CHAR_LENGTH}`;
  return null;
}
