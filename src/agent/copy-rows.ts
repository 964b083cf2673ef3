/**
 * COPY text as the uploader cuts it: rows end with a newline; the leading wire columns of a row are
 * its version and key. Pure functions on buffers.
 */
import { leadingCopyFields } from '../shared/row-shape.js';

const NEWLINE = 0x0a;

export interface RowId {
  key: string[];
  version: string;
}

export function countRows(buf: Buffer): number {
  let n = 0;
  for (let i = buf.indexOf(NEWLINE); i !== -1; i = buf.indexOf(NEWLINE, i + 1)) n++;
  return n;
}

/**
 * Where to cut the first batch of `buf`: the end of the last complete row within `rows` rows and
 * `bytes` bytes, or of the first row if it alone is larger. 0 when `buf` holds no complete row.
 */
export function cutPoint(buf: Buffer, rows: number, bytes: number): number {
  return cutChunks([buf], rows, bytes).batch.length;
}

/**
 * Cuts the first batch off the text held in `chunks` (in order), where `cutPoint` says, without
 * joining them first: the batch (its rows, one buffer), the chunks left after it, which share
 * memory with `chunks`, and which limit ended the batch (`end`: the text ended first). Only the
 * batch's bytes are copied, once (none for a batch within one chunk); the rest is never copied
 * again by a later cut. An empty batch when the chunks hold no complete row.
 */
export function cutChunks(
  chunks: readonly Buffer[],
  rows: number,
  bytes: number,
): { batch: Buffer; rows: number; rest: Buffer[]; bound: 'rows' | 'bytes' | 'end' } {
  let end = 0;
  let n = 0;
  let offset = 0; // of the current chunk in the text
  let at = 0; // the chunk holding the end of the batch
  let before = 0; // its offset in the text
  let bound: 'rows' | 'bytes' | 'end' = 'end'; // which limit ended the batch; 'end': the text did
  scan: for (let c = 0; c < chunks.length; c++) {
    const chunk = chunks[c] as Buffer;
    for (let i = chunk.indexOf(NEWLINE); i !== -1; i = chunk.indexOf(NEWLINE, i + 1)) {
      if (n >= rows) {
        bound = 'rows';
        break scan;
      }
      if (n > 0 && offset + i + 1 > bytes) {
        bound = 'bytes';
        break scan;
      }
      end = offset + i + 1;
      at = c;
      before = offset;
      n++;
    }
    offset += chunk.length;
    if (n > 0 && offset >= bytes) {
      bound = 'bytes'; // the next row would end beyond the limit
      break;
    }
  }
  if (n === 0) return { batch: Buffer.alloc(0), rows: 0, rest: [...chunks], bound };
  const last = chunks[at] as Buffer;
  const within = end - before;
  const parts = [...chunks.slice(0, at), last.subarray(0, within)];
  const rest = within < last.length ? [last.subarray(within), ...chunks.slice(at + 1)] : chunks.slice(at + 1);
  return { batch: parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, end), rows: n, rest, bound };
}

/** Key and version of the last row of a batch (`keyWidth` key columns). */
export function lastRowOf(buf: Buffer, keyWidth: number): RowId | undefined {
  const end = buf[buf.length - 1] === NEWLINE ? buf.length - 1 : buf.length;
  if (end <= 0) return undefined;
  const start = buf.lastIndexOf(NEWLINE, end - 1) + 1;
  const [version, ...key] = leadingCopyFields(buf.subarray(start, end).toString('utf8'), 1 + keyWidth);
  return { version: version ?? '0', key: key.map((k) => k ?? '') };
}

/** Keys and versions of the rows in a batch (the leading wire columns). */
export function rowIdsOf(buf: Buffer, keyWidth: number): RowId[] {
  const lines = buf.toString('utf8').split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines.map((line) => {
    const [version, ...key] = leadingCopyFields(line, 1 + keyWidth);
    return { version: version ?? '0', key: key.map((k) => k ?? '') };
  });
}
