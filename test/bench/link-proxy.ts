/**
 * Simulated links on 127.0.0.1: an HTTP proxy between agent and server that rejects large bodies
 * (like a reverse proxy's client_max_body_size) or throttles (one shared link of a given bandwidth
 * plus a round-trip latency), and a TCP proxy that counts the bytes that cross it.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export type LinkMode =
  /** Bodies above `maxBodyBytes` get a 413 page, as from a reverse proxy; nothing reaches the server. */
  | { kind: 'max-body'; maxBodyBytes: number }
  /** Requests and responses share one link of `bytesPerSecond`, plus `latencyMs` per round trip. */
  | { kind: 'throttle'; bytesPerSecond: number; latencyMs: number };

export interface LinkProxy {
  url: string;
  stats: { requests: number; rejected: number; bytesIn: number };
  close(): Promise<void>;
}

export async function startLinkProxy(upstream: string, mode: LinkMode): Promise<LinkProxy> {
  const target = new URL(upstream);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  const stats = { requests: 0, rejected: 0, bytesIn: 0 };
  // The link is one pipe: a transfer starts when the previous one has finished.
  let linkFreeAt = 0;
  const transfer = (bytes: number): number => {
    if (mode.kind !== 'throttle') return 0;
    const now = performance.now();
    linkFreeAt = Math.max(linkFreeAt, now) + (1000 * bytes) / mode.bytesPerSecond;
    return linkFreeAt - now;
  };

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        const body = Buffer.concat(chunks);
        stats.requests++;
        stats.bytesIn += body.length;
        if (mode.kind === 'max-body' && body.length > mode.maxBodyBytes) {
          stats.rejected++;
          const page = '<html><head><title>413 Request Entity Too Large</title></head><body><h1>413 Request Entity Too Large</h1></body></html>';
          res.writeHead(413, { 'content-type': 'text/html', 'content-length': Buffer.byteLength(page) });
          res.end(page);
          return;
        }
        // Upload through the link (half the latency), then to the server.
        if (mode.kind === 'throttle') await sleep(transfer(body.length + 300) + mode.latencyMs / 2);
        const headers = { ...req.headers, host: target.host };
        const up = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers, agent }, (upRes) => {
          const back: Buffer[] = [];
          upRes.on('data', (c: Buffer) => back.push(c));
          upRes.on('end', () => {
            void (async () => {
              const answer = Buffer.concat(back);
              if (mode.kind === 'throttle') await sleep(transfer(answer.length + 200) + mode.latencyMs / 2);
              const h = { ...upRes.headers };
              delete h['transfer-encoding'];
              h['content-length'] = String(answer.length);
              res.writeHead(upRes.statusCode ?? 502, h);
              res.end(answer);
            })();
          });
        });
        up.on('error', (e) => {
          res.writeHead(502, { 'content-type': 'text/plain' });
          res.end(`bad gateway: ${e.message}`);
        });
        up.end(body);
      })();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    stats,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      agent.destroy();
    },
  };
}

export interface CountingProxy {
  port: number;
  /** Bytes client -> upstream and upstream -> client since the start. */
  bytes(): { sent: number; received: number };
  close(): Promise<void>;
}

/** A TCP proxy to `host:port` that counts the bytes both ways (whole wire: headers, protocol, data). */
export async function startCountingProxy(host: string, port: number): Promise<CountingProxy> {
  let sent = 0;
  let received = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const up = net.connect({ host, port });
    sockets.add(client);
    sockets.add(up);
    client.on('data', (d: Buffer) => {
      sent += d.length;
    });
    up.on('data', (d: Buffer) => {
      received += d.length;
    });
    client.pipe(up);
    up.pipe(client);
    const end = (): void => {
      client.destroy();
      up.destroy();
      sockets.delete(client);
      sockets.delete(up);
    };
    client.on('error', end);
    up.on('error', end);
    client.on('close', end);
    up.on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    bytes: () => ({ sent, received }),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
