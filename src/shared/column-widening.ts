/**
 * Which column types widen into which (issue 8, item 1): the server makes a shared replica column
 * the least type that holds every tenant's values (`joinTypes`), and the agent knows whether a
 * local widening changed the stored values' text (`textStable`), i.e. whether rows must be re-sent.
 *
 * Types are `format_type()` output. Families: integers and numeric, real and double precision,
 * varchar and text, timestamp/time precision. Any other type joins only itself. A value of a
 * narrower type stored in the wider column and cast back to the narrower type reads as it did
 * (1.23 stored in numeric(12,4) is 1.2300, cast to numeric(10,2) it is 1.23 again): that is how a
 * tenant on the narrower type still verifies equal (the server hashes its rows cast to its type).
 */

/** Integer digits each integer type needs in a numeric. */
const INT_DIGITS: Readonly<Record<string, number>> = { smallint: 5, integer: 10, bigint: 19 };
const INT_RANK: Readonly<Record<string, number>> = { smallint: 0, integer: 1, bigint: 2 };
/** numeric's largest precision with a type modifier. */
const MAX_NUMERIC_PRECISION = 1000;

type Parsed =
  | { kind: 'int'; name: string }
  | { kind: 'numeric'; precision: number; scale: number }
  | { kind: 'numeric_any' }
  | { kind: 'float'; rank: number; name: string }
  | { kind: 'varchar'; length: number | null }
  | { kind: 'text' }
  | { kind: 'temporal'; base: string; precision: number }
  | { kind: 'other'; name: string };

const TEMPORAL = /^(timestamp|time)(?:\((\d)\))? (with|without) time zone$/;

function parse(type: string): Parsed {
  if (type in INT_RANK) return { kind: 'int', name: type };
  if (type === 'numeric') return { kind: 'numeric_any' };
  const num = /^numeric\((\d+),(-?\d+)\)$/.exec(type);
  if (num) return { kind: 'numeric', precision: Number(num[1]), scale: Number(num[2]) };
  if (type === 'real') return { kind: 'float', rank: 0, name: type };
  if (type === 'double precision') return { kind: 'float', rank: 1, name: type };
  if (type === 'text') return { kind: 'text' };
  if (type === 'character varying') return { kind: 'varchar', length: null };
  const vc = /^character varying\((\d+)\)$/.exec(type);
  if (vc) return { kind: 'varchar', length: Number(vc[1]) };
  const t = TEMPORAL.exec(type);
  if (t) return { kind: 'temporal', base: `${t[1]} ${t[3]} time zone`, precision: t[2] === undefined ? 6 : Number(t[2]) };
  return { kind: 'other', name: type };
}

function numericOf(p: Parsed): { intDigits: number; scale: number } | null {
  if (p.kind === 'int') return { intDigits: INT_DIGITS[p.name] ?? 19, scale: 0 };
  if (p.kind === 'numeric') return { intDigits: p.precision - p.scale, scale: p.scale };
  return null;
}

function temporalType(base: string, precision: number): string {
  const [head, ...rest] = base.split(' ');
  return precision === 6 ? base : `${head}(${precision}) ${rest.join(' ')}`;
}

function joinScalar(a: string, b: string): string | null {
  if (a === b) return a;
  const x = parse(a);
  const y = parse(b);
  if (x.kind === 'int' && y.kind === 'int') return (INT_RANK[x.name] ?? 0) >= (INT_RANK[y.name] ?? 0) ? a : b;
  if ((x.kind === 'numeric_any' && (y.kind === 'int' || y.kind === 'numeric')) || (y.kind === 'numeric_any' && (x.kind === 'int' || x.kind === 'numeric')))
    return 'numeric';
  const nx = numericOf(x);
  const ny = numericOf(y);
  if (nx && ny) {
    const scale = Math.max(nx.scale, ny.scale);
    const precision = Math.max(nx.intDigits, ny.intDigits) + scale;
    if (precision > MAX_NUMERIC_PRECISION || scale < 0) return 'numeric';
    return `numeric(${precision},${scale})`;
  }
  if (x.kind === 'float' && y.kind === 'float') return x.rank >= y.rank ? a : b;
  const texty = (p: Parsed): boolean => p.kind === 'varchar' || p.kind === 'text';
  if (texty(x) && texty(y)) {
    if (x.kind === 'varchar' && y.kind === 'varchar' && x.length !== null && y.length !== null) return x.length >= y.length ? a : b;
    return 'text';
  }
  if (x.kind === 'temporal' && y.kind === 'temporal' && x.base === y.base) return temporalType(x.base, Math.max(x.precision, y.precision));
  return null;
}

/**
 * The least type holding every value of both types (with the same text once cast back), or null
 * when there is none (incompatible families). Arrays join by element, with the same dimensions.
 */
export function joinTypes(a: string, b: string): string | null {
  const dims = (t: string): number => /(\[\])*$/.exec(t)?.[0].length ?? 0;
  if (dims(a) !== dims(b)) return null;
  const suffix = a.slice(a.length - dims(a));
  const joined = joinScalar(a.slice(0, a.length - dims(a)), b.slice(0, b.length - dims(b)));
  return joined === null ? null : `${joined}${suffix}`;
}

/** Whether `wide` holds every value of `narrow` (a widening, or the same type). */
export function widens(narrow: string, wide: string): boolean {
  return joinTypes(narrow, wide) === wide;
}

/**
 * Whether a local `alter column … type` from `before` to `after` (a widening) keeps every stored
 * value's text: integers, varchar/text and timestamp/time precision do; a numeric scale increase
 * (1.5 becomes 1.50), an integer becoming numeric with a scale, real to double precision and
 * anything else may not, and then the table's rows are compared and re-sent where they differ.
 */
export function textStable(before: string, after: string): boolean {
  if (before === after) return true;
  const x = parse(before);
  const y = parse(after);
  if (x.kind === 'int' && y.kind === 'int') return true;
  if (x.kind === 'int' && (y.kind === 'numeric_any' || (y.kind === 'numeric' && y.scale === 0))) return true;
  if (x.kind === 'numeric' && y.kind === 'numeric') return x.scale === y.scale;
  if ((x.kind === 'varchar' || x.kind === 'text') && (y.kind === 'varchar' || y.kind === 'text')) return true;
  if (x.kind === 'temporal' && y.kind === 'temporal') return x.base === y.base && y.precision >= x.precision;
  return false;
}
