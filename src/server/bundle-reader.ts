/**
 * Reads an offline bundle (src/shared/protocol/bundle.ts) as frames, and verifies one in a first
 * pass before anything is applied: the magic, every frame's bounds and JSON shape, their order,
 * and the HMAC over every byte under the key of the database the header names. Altered in any
 * byte, truncated, extended or made with another database's key: refused, nothing read further.
 * Rows frames meet the online upload's walls here too (size, no end-of-data line), so a bundle
 * that would fail them is refused whole rather than halfway through the import.
 */
import { timingSafeEqual } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import type { z } from 'zod';

import { ErrorCode, ProtocolError } from '../shared/errors.js';
import {
  BUNDLE_MAC_BYTES,
  BUNDLE_MAGIC,
  type BundleHeader,
  bundleHeaderSchema,
  bundleHmac,
  bundleTableEndSchema,
  bundleTableSchema,
  FRAME_HEADER_BYTES,
  FrameType,
  isFrameType,
  MAX_BUNDLE_JSON_FRAME_BYTES,
} from '../shared/protocol/bundle.js';
import type { BundleStore } from './bundle-store.js';
import { endMarkerGuard } from './copy-guard.js';

export interface Frame {
  type: FrameType;
  /** The frame's type and length bytes, as read (they are MAC'd too). */
  head: Buffer;
  payload: Buffer;
}

export function refused(message: string): ProtocolError {
  return new ProtocolError(ErrorCode.REQUEST_INVALID, 400, `bundle refused: ${message}; nothing was changed`);
}

/** A queue of chunks from which exact byte counts are taken without re-copying everything. */
class ByteQueue {
  private parts: Buffer[] = [];
  length = 0;
  push(b: Buffer): void {
    this.parts.push(b);
    this.length += b.length;
  }
  take(n: number): Buffer {
    const first = this.parts[0];
    if (first && first.length >= n) {
      this.parts[0] = first.subarray(n);
      this.length -= n;
      return first.subarray(0, n);
    }
    const out = Buffer.concat(this.parts, this.length);
    this.parts = [out.subarray(n)];
    this.length -= n;
    return out.subarray(0, n);
  }
}

/** The frames of a bundle file; `maxRowsBytes` bounds a rows frame (the online body limit). */
export async function* readFrames(path: string, maxRowsBytes: number): AsyncGenerator<Frame> {
  const stream = createReadStream(path, { highWaterMark: 1024 * 1024 });
  const q = new ByteQueue();
  let magic = false;
  let need = BUNDLE_MAGIC.length;
  let pending: { type: FrameType; head: Buffer; length: number } | null = null;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    q.push(chunk);
    while (q.length >= need) {
      if (!magic) {
        if (!q.take(BUNDLE_MAGIC.length).equals(BUNDLE_MAGIC)) throw refused('not a tidemark bundle (bad magic)');
        magic = true;
        need = FRAME_HEADER_BYTES;
      } else if (!pending) {
        const head = q.take(FRAME_HEADER_BYTES);
        const type = head.readUInt8(0);
        const length = head.readUInt32BE(1);
        if (!isFrameType(type)) throw refused(`unknown frame type ${type}`);
        const limit = type === FrameType.rows ? maxRowsBytes : type === FrameType.mac ? BUNDLE_MAC_BYTES : MAX_BUNDLE_JSON_FRAME_BYTES;
        if (length > limit) throw refused(`a frame of ${length} bytes is larger than the ${limit} accepted`);
        pending = { type, head, length };
        need = length;
      } else {
        const payload = q.take(pending.length);
        yield { type: pending.type, head: pending.head, payload };
        pending = null;
        need = FRAME_HEADER_BYTES;
      }
    }
  }
  if (!magic || pending || q.length > 0) throw refused('the file is truncated');
}

/** COPY stops at a `\.` line and drops what follows: the online guard (copy-guard.ts), on one frame. */
async function refuseEndMarker(payload: Buffer): Promise<void> {
  const sink = new Writable({ write: (_chunk, _enc, cb) => cb() });
  try {
    await pipeline(Readable.from([payload]), endMarkerGuard(), sink);
  } catch {
    throw refused('a rows frame contains an end-of-data line (\\.), which COPY would stop at');
  }
}

/**
 * A key-set frame (about 100,000 rows) is checked by PostgreSQL, which reads it in the import
 * (PgManifests.absentKeys): what it accepts here, the import can read, and the frame never becomes
 * JavaScript objects (JSON.parse of ten such frames took a server's RSS up by 120 MiB).
 */
async function checkKeys(frame: Frame, bundles: BundleStore): Promise<void> {
  const verdict = await bundles.checkKeySet(frame.payload.toString('utf8'));
  if (verdict === 'not json') throw refused('its key set is not JSON');
  if (verdict === 'invalid') throw refused('its key set is invalid (expected {"buckets": [bucket, ...], "rows": [[[key text, ...], "version"], ...]})');
}

export function parseFrame<T>(schema: z.ZodType<T>, frame: Frame, what: string): T {
  let json: unknown;
  try {
    json = JSON.parse(frame.payload.toString('utf8'));
  } catch {
    throw refused(`its ${what} is not JSON`);
  }
  const r = schema.safeParse(json);
  if (!r.success) throw refused(`its ${what} is invalid (${r.error.issues[0]?.message ?? 'invalid'})`);
  return r.data;
}

/** First pass: the header, once every byte is checked against the MAC of the database it names. */
export async function verifyBundle(path: string, bundles: BundleStore, maxRowsBytes: number): Promise<BundleHeader> {
  let header: BundleHeader | null = null;
  let mac: ReturnType<typeof bundleHmac> | null = null;
  let macOk = false;
  let inTable = false;
  for await (const f of readFrames(path, maxRowsBytes)) {
    if (macOk) throw refused('bytes follow its MAC');
    if (!header || !mac) {
      if (f.type !== FrameType.header) throw refused('it does not start with a header');
      header = parseFrame(bundleHeaderSchema, f, 'header');
      const hash = await bundles.apiKeyHash(header.clientId, header.databaseId);
      if (!hash) throw new ProtocolError(ErrorCode.NOT_FOUND, 404, `bundle refused: ${header.clientId}/${header.databaseId} is not registered on this server`);
      mac = bundleHmac(hash).update(BUNDLE_MAGIC).update(f.head).update(f.payload);
      continue;
    }
    if (f.type === FrameType.mac) {
      const expected = mac.digest();
      if (f.payload.length !== expected.length || !timingSafeEqual(f.payload, expected))
        throw refused(
          `its MAC does not match ${header.clientId}/${header.databaseId}'s key (the file was altered, or exported with another database's API key)`,
        );
      macOk = true;
      continue;
    }
    mac.update(f.head).update(f.payload);
    if (f.type === FrameType.header) throw refused('it has two headers');
    if (f.type === FrameType.table) {
      if (inTable) throw refused('a table begins inside another');
      parseFrame(bundleTableSchema, f, 'table frame');
      inTable = true;
    } else if (f.type === FrameType.tableEnd) {
      if (!inTable) throw refused('a table ends that did not begin');
      parseFrame(bundleTableEndSchema, f, 'table end');
      inTable = false;
    } else {
      if (!inTable) throw refused('rows or keys outside a table');
      if (f.type === FrameType.keys) await checkKeys(f, bundles);
      else await refuseEndMarker(f.payload);
    }
  }
  if (!header || !macOk) throw refused('the file is truncated (no MAC)');
  if (inTable) throw refused('a table does not end');
  return header;
}
