/**
 * A guard on upload bodies (COPY text): a line `\.` is PostgreSQL's end-of-data marker, and COPY
 * silently ignores whatever follows it. The agent never sends one (it escapes a backslash as `\\`),
 * so a body with such a line is malformed and refused whole, before anything is written.
 */
import { Transform, type TransformCallback } from 'node:stream';

import { ErrorCode, ProtocolError } from '../shared/errors.js';

const MARKER = Buffer.from('\n\\.');
const LF = 0x0a;
const CR = 0x0d;

function malformed(): ProtocolError {
  return new ProtocolError(ErrorCode.UPLOAD_REJECTED, 400, 'rows rejected: the body contains an end-of-data line (\\.); COPY text must not contain one');
}

/**
 * Whether `buf` holds a marker line starting before `maxStart`; `final` when nothing follows `buf`.
 * Hits cut off at the end are left for the next call.
 */
function hasMarkerLine(buf: Buffer, final: boolean, maxStart = buf.length): boolean {
  for (let i = buf.indexOf(MARKER); i !== -1 && i < maxStart; i = buf.indexOf(MARKER, i + 1)) {
    const next = buf[i + 3];
    if (next === undefined) {
      if (final) return true;
    } else if (next === LF) return true;
    else if (next === CR) {
      const after = buf[i + 4];
      if (after === LF || (after === undefined && final)) return true;
    }
  }
  return false;
}

/** Bytes kept from one chunk to the next: a marker line (`\n\\.\r\n`) is 5 bytes long. */
const TAIL = 4;

export function endMarkerGuard(): Transform {
  // The last bytes seen, so a marker split across chunks is found; a newline stands for the body's start.
  let tail = Buffer.from('\n');
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      // Markers starting in the tail, with the chunk's first bytes after them; then the chunk
      // itself, scanned in place (uploads are large: a copy of every chunk cost the server about a
      // tenth of its CPU in a first sync).
      const seam = Buffer.concat([tail, chunk.subarray(0, TAIL + 1)]);
      if (hasMarkerLine(seam, false, tail.length) || hasMarkerLine(chunk, false)) return cb(malformed());
      const last = chunk.length >= TAIL ? chunk.subarray(chunk.length - TAIL) : seam.subarray(Math.max(0, seam.length - TAIL));
      tail = Buffer.from(last);
      cb(null, chunk);
    },
    flush(cb: TransformCallback) {
      cb(hasMarkerLine(tail, true) ? malformed() : null);
    },
  });
}
