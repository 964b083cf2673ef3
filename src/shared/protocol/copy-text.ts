/**
 * PostgreSQL's COPY text format, the encoding of row data on the wire (`text/tab-separated-values`):
 * one line per row, fields separated by tabs, `\N` for null, backslash escapes for the rest.
 * https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.2
 */

export const COPY_CONTENT_TYPE = 'text/tab-separated-values';

/** A line holding only this ends COPY data in PostgreSQL; an agent never sends one (it escapes `\.`). */
export const COPY_END_MARKER = '\\.';

const ESCAPES: Record<string, string> = { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', '\\': '\\' };

/** Decodes one COPY text field (`\N` is null). */
export function decodeCopyField(field: string): string | null {
  if (field === '\\N') return null;
  if (!field.includes('\\')) return field;
  let out = '';
  for (let i = 0; i < field.length; i++) {
    const c = field[i] as string;
    if (c !== '\\') {
      out += c;
      continue;
    }
    const n = field[i + 1] ?? '';
    if (n in ESCAPES) {
      out += ESCAPES[n];
      i++;
    } else if (n === 'x' && /^[0-9a-fA-F]/.test(field[i + 2] ?? '')) {
      const hex = /^[0-9a-fA-F]{1,2}/.exec(field.slice(i + 2))?.[0] ?? '';
      out += String.fromCharCode(Number.parseInt(hex, 16));
      i += 1 + hex.length;
    } else if (/[0-7]/.test(n)) {
      const oct = /^[0-7]{1,3}/.exec(field.slice(i + 1))?.[0] ?? '';
      out += String.fromCharCode(Number.parseInt(oct, 8));
      i += oct.length;
    } else {
      out += n;
      i++;
    }
  }
  return out;
}

/** Encodes one value as a COPY text field (null as `\N`); `decodeCopyField` reverses it. */
export function encodeCopyField(value: string | null): string {
  if (value === null) return '\\N';
  return value.replace(/[\\\b\f\n\r\t\v]/g, (c) => {
    switch (c) {
      case '\\':
        return '\\\\';
      case '\b':
        return '\\b';
      case '\f':
        return '\\f';
      case '\n':
        return '\\n';
      case '\r':
        return '\\r';
      case '\t':
        return '\\t';
      default:
        return '\\v';
    }
  });
}

/** The first `n` fields of a COPY text line, decoded. */
export function leadingCopyFields(line: string, n: number): (string | null)[] {
  const out: (string | null)[] = [];
  let start = 0;
  for (let i = 0; i < n; i++) {
    let end = line.indexOf('\t', start);
    if (end === -1) end = line.length;
    out.push(decodeCopyField(line.slice(start, end)));
    start = end + 1;
  }
  return out;
}
