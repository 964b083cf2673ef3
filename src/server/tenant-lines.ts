/**
 * The tenant columns written into COPY text by the server: each line of an upload body gets the
 * authenticated tenant's two values in front, for a `COPY` straight into a replica table
 * (replica-rows.ts, the copy role), where row-level security does not check them.
 *
 * COPY text ends a row at a newline, or at a carriage return when the body's first line ends with
 * one: a body with bare carriage returns would hold rows this transform never saw start, and their
 * first fields would be read as tenant columns. The agent never sends a raw carriage return (COPY
 * escapes one as `\r`), so a body that holds one is refused whole.
 */
import { Transform, type TransformCallback } from 'node:stream';

import { ErrorCode, ProtocolError } from '../shared/errors.js';

const LF = 0x0a;
const CR = 0x0d;
const TAB = 0x09;

/** COPY text's escapes for the characters it cannot hold raw (a tenant value is not expected to hold any). */
function copyField(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n').replace(/\r/g, '\\r');
}

export interface TenantLines extends Transform {
  /** Lines seen so far (a last line without a newline counts once it has a byte). */
  readonly lines: number;
}

/** A transform that writes `values` (COPY fields) in front of every line of COPY text. */
export function tenantLines(values: readonly string[]): TenantLines {
  const prefix = Buffer.from(values.map((v) => `${copyField(v)}\t`).join(''));
  if (prefix[prefix.length - 1] !== TAB) throw new Error('tenantLines needs at least one value');
  let atLineStart = true;
  let lines = 0;
  const transform = new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      if (chunk.indexOf(CR) !== -1)
        return cb(new ProtocolError(ErrorCode.UPLOAD_REJECTED, 400, 'rows rejected: the body contains a raw carriage return; COPY text escapes one as \\r'));
      const parts: Buffer[] = [];
      let at = 0;
      while (at < chunk.length) {
        if (atLineStart) {
          parts.push(prefix);
          lines++;
        }
        const end = chunk.indexOf(LF, at);
        if (end === -1) {
          parts.push(chunk.subarray(at));
          atLineStart = false;
          break;
        }
        parts.push(chunk.subarray(at, end + 1));
        atLineStart = true;
        at = end + 1;
      }
      cb(null, Buffer.concat(parts));
    },
  }) as TenantLines;
  Object.defineProperty(transform, 'lines', { get: () => lines });
  return transform;
}
