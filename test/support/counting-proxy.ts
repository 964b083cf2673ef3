/**
 * An HTTP proxy on 127.0.0.1 in front of a test server that sees every exchange: a test counts
 * requests and rows, and acts at a chosen exchange (e.g. kills the agent after the server applied a
 * batch, before the agent hears the answer), deterministically, whatever the machine's speed.
 */
import { createServer, type IncomingHttpHeaders, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Exchange {
  method: string;
  path: string;
  requestBytes: number;
  status: number;
  /** The answer's body (JSON for tidemark routes). */
  body: string;
}

export interface CountingProxy extends AsyncDisposable {
  url: string;
  exchanges: Exchange[];
  /**
   * Called once the server answered, before the answer is passed on; 'drop' closes the client's
   * connection instead (the answer is lost).
   */
  onAnswer: ((exchange: Exchange) => Promise<'pass' | 'drop'>) | null;
}

export async function startCountingProxy(target: string): Promise<CountingProxy> {
  const upstream = new URL(target);
  const proxy: CountingProxy = {
    url: '',
    exchanges: [],
    onAnswer: null,
    async [Symbol.asyncDispose]() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const forward = (method: string, path: string, headers: IncomingHttpHeaders, body: Buffer) =>
    new Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }>((resolve, reject) => {
      const req = request({ host: upstream.hostname, port: upstream.port, method, path, headers: { ...headers, host: upstream.host } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(body);
    });
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        const body = Buffer.concat(chunks);
        try {
          const answer = await forward(req.method ?? 'GET', req.url ?? '/', req.headers, body);
          const exchange: Exchange = {
            method: req.method ?? 'GET',
            path: req.url ?? '/',
            requestBytes: body.length,
            status: answer.status,
            body: answer.body.toString('utf8'),
          };
          proxy.exchanges.push(exchange);
          if ((await proxy.onAnswer?.(exchange)) === 'drop') {
            req.socket.destroy();
            return;
          }
          res.writeHead(answer.status, answer.headers);
          res.end(answer.body);
        } catch {
          req.socket.destroy();
        }
      })();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  proxy.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return proxy;
}

/** Rows the server says it received in an upload answer (0 for other exchanges). */
export function rowsReceived(e: Exchange): number {
  if (e.method !== 'POST' || e.status !== 200 || e.path.includes('/manifest') || e.path.includes('/recount')) return 0;
  try {
    return (JSON.parse(e.body) as { rowsReceived?: number }).rowsReceived ?? 0;
  } catch {
    return 0;
  }
}
