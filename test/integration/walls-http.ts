/**
 * Raw HTTP against a test server, as a hostile or confused client would speak it: shared by the
 * server-*.test.ts and walls-*.test.ts files.
 */
import { expect } from 'vitest';

import { tablePath } from '../../src/shared/protocol.js';
import type { TestServer } from '../support/fixtures.js';

export const DECLARATION = {
  columns: [
    { name: 'tidemark_version', type: 'bigint', notNull: true },
    { name: 'id', type: 'integer', notNull: true },
    { name: 'name', type: 'text', notNull: false },
  ],
  keyColumns: ['id'],
};

export interface CallResult {
  status: number;
  headers: Headers;
  body: { error?: { code: string; message: string } } & Record<string, unknown>;
}

export async function call(
  server: { url: string },
  method: string,
  path: string,
  options: { key?: string; body?: string | Uint8Array; contentType?: string; agentId?: string; headers?: Record<string, string> } = {},
): Promise<CallResult> {
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers: {
      ...(options.key ? { authorization: `Bearer ${options.key}` } : {}),
      ...(options.contentType ? { 'content-type': options.contentType } : {}),
      'x-tidemark-agent-id': options.agentId ?? 'agent-1',
      ...options.headers,
    },
    ...(options.body !== undefined ? { body: options.body } : {}),
  });
  const text = await res.text();
  let body: CallResult['body'];
  try {
    body = JSON.parse(text) as CallResult['body'];
  } catch {
    body = { text };
  }
  return { status: res.status, headers: res.headers, body };
}

export const json = (value: unknown) => ({ body: JSON.stringify(value), contentType: 'application/json' });
export const copyText = (text: string) => ({ body: text, contentType: 'text/tab-separated-values' });

/** Registers `clientId` and declares `public.<table>` with `declaration`; returns the key and path. */
export async function declared(server: TestServer, clientId: string, table = 'items', declaration: unknown = DECLARATION) {
  const reg = await server.register(clientId);
  const path = tablePath(reg.clientId, reg.databaseId, { schema: 'public', name: table });
  const put = await call(server, 'PUT', path, { key: reg.apiKey, ...json(declaration) });
  expect(put.status, JSON.stringify(put.body)).toBe(200);
  return { reg, path };
}

/** The value of one sample of a metric in the server's exposition (0 when absent). */
export async function metricValue(server: { url: string }, name: string): Promise<number> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line ? Number(line.split(' ').at(-1)) : 0;
}
