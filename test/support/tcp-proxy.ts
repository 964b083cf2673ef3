/**
 * A seeded fault-injecting TCP proxy for tests: it sits between agent and server on 127.0.0.1,
 * frames the HTTP/1.1 requests that cross it (request line, headers, Content-Length body), and
 * decides the fate of each request in arrival order from a seeded PRNG:
 *
 *  - `reset-mid-body`: half the body reaches the server, then both connections are reset;
 *  - `reset-after-response`: the request reaches the server, which answers (it has committed), and
 *    the client's connection is reset instead of getting the answer;
 *  - `status-before`: a 502 or 503 page from the "proxy", nothing reaches the server;
 *  - `status-after`: the server gets the request and answers, the client gets a 502 or 503 instead;
 *  - `delay`: the request waits before it is forwarded (the outcome is unchanged);
 *  - `capture` (one-shot rules only): the request is kept, not forwarded, and the client is reset;
 *    `replay()` sends it to the server later, as a late packet would arrive;
 *  - `upstream-down`: the server does not accept connections; the client gets a 503, as from a
 *    load balancer with no healthy backend.
 *
 * Decisions depend only on the seed and the request's index, so a replay with the same seed applies
 * the same fault to the n-th request. Tests wait for events (`waitFor`) such as "N requests seen",
 * never for time.
 */
import { EventEmitter } from 'node:events';
import type { AddressInfo } from 'node:net';
import * as net from 'node:net';

import { seededRandom } from './seeded-random.js';

export type FaultKind = 'reset-mid-body' | 'reset-after-response' | 'status-before' | 'status-after' | 'delay' | 'capture' | 'upstream-down';

export const FAULT_KINDS: readonly FaultKind[] = [
  'reset-mid-body',
  'reset-after-response',
  'status-before',
  'status-after',
  'delay',
  'capture',
  'upstream-down',
];

/** Probability of each fault per request (the rest pass untouched), and the longest delay. */
export interface FaultMix {
  resetMidBody: number;
  resetAfterResponse: number;
  statusBefore: number;
  statusAfter: number;
  delay: number;
  maxDelayMs: number;
}

/** Which wire-protocol route a request is for (see README, Wire protocol). */
export type RouteKind = 'upload' | 'declare' | 'summary' | 'delete' | 'manifest' | 'recount' | 'resync' | 'other';

export interface ProxiedRequest {
  /** 0-based arrival order (the seeded decision's index). */
  index: number;
  method: string;
  path: string;
  route: RouteKind;
  /** The table in the path (decoded text form), or null. */
  table: string | null;
  /** Rows in an upload body (COPY text lines), else 0. */
  bodyRows: number;
  fault: FaultKind | null;
  /** The status the server answered (whether or not the client saw it), or null if it never answered. */
  serverStatus: number | null;
  /** The status the client saw, or null if its connection was reset. */
  clientStatus: number | null;
  /** True once the request is settled (answered, reset, or captured). */
  done: boolean;
}

/** A request kept by a `capture` rule: its raw bytes, for `replay()`. */
export interface CapturedRequest {
  request: ProxiedRequest;
  bytes: Buffer;
}

export interface FaultProxy {
  url: string;
  port: number;
  readonly requests: readonly ProxiedRequest[];
  /** Faults applied, by kind. */
  readonly faults: Record<FaultKind, number>;
  /** Turns the seeded mix on (or off with null). Decisions keep their index either way. */
  setMix(mix: FaultMix | null): void;
  /** Applies `fault` to the next request that matches (before the mix). Resolves when it is settled. */
  once(match: (r: ProxiedRequest) => boolean, fault: 'capture'): Promise<CapturedRequest>;
  once(match: (r: ProxiedRequest) => boolean, fault: Exclude<FaultKind, 'capture' | 'upstream-down'>): Promise<ProxiedRequest>;
  /** Drops the one-shot rules no request has matched yet. */
  clearRules(): void;
  /** Sends a captured request to the server now, on a new connection; resolves with the server's status. */
  replay(captured: CapturedRequest): Promise<number>;
  /** Resolves once `predicate` holds (checked at every request event); rejects after `timeoutMs` saying what it waited for. */
  waitFor(what: string, predicate: () => boolean, timeoutMs: number): Promise<void>;
  /** Connections currently open from clients. */
  openConnections(): number;
  /** Resets every open connection (both sides). */
  resetAll(): void;
  close(): Promise<void>;
}

interface Rule {
  match: (r: ProxiedRequest) => boolean;
  fault: FaultKind;
  resolve: (value: CapturedRequest) => void;
}

const HEAD_END = Buffer.from('\r\n\r\n');

function routeOf(method: string, path: string): { route: RouteKind; table: string | null } {
  const m = /^\/v1\/customers\/[^/]+\/databases\/[^/]+\/tables\/([^/?]+)(\/[a-z]+)?/.exec(path);
  if (!m) return { route: 'other', table: null };
  const table = decodeURIComponent(m[1] as string);
  const suffix = m[2];
  if (suffix === '/manifest') return { route: 'manifest', table };
  if (suffix === '/recount') return { route: 'recount', table };
  if (suffix === '/resync') return { route: 'resync', table };
  if (method === 'POST') return { route: 'upload', table };
  if (method === 'PUT') return { route: 'declare', table };
  if (method === 'GET') return { route: 'summary', table };
  if (method === 'DELETE') return { route: 'delete', table };
  return { route: 'other', table };
}

function countLines(buf: Buffer): number {
  let n = 0;
  for (let i = buf.indexOf(0x0a); i !== -1; i = buf.indexOf(0x0a, i + 1)) n++;
  return n;
}

function statusOf(chunk: Buffer): number | null {
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(chunk.subarray(0, 16).toString('latin1'));
  return m ? Number(m[1]) : null;
}

function errorPage(status: number): string {
  const text = status === 502 ? 'Bad Gateway' : 'Service Unavailable';
  const body = `<html><body><h1>${status} ${text}</h1></body></html>`;
  return `HTTP/1.1 ${status} ${text}\r\ncontent-type: text/html\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`;
}

export async function startFaultProxy(options: { upstreamPort: number; upstreamHost?: string; seed: number }): Promise<FaultProxy> {
  const host = options.upstreamHost ?? '127.0.0.1';
  const random = seededRandom(options.seed);
  const events = new EventEmitter();
  events.setMaxListeners(100);
  const requests: ProxiedRequest[] = [];
  const faults = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>;
  const sockets = new Set<net.Socket>();
  const timers = new Set<NodeJS.Timeout>();
  let mix: FaultMix | null = null;
  let rules: Rule[] = [];
  const changed = (): void => {
    events.emit('change');
  };

  /** The seeded decision for the next request: always three draws, so indexes stay aligned whatever the mix. */
  const decide = (): { fault: FaultKind | null; status: number; delayMs: number } => {
    const roll = random();
    const status = random() < 0.5 ? 502 : 503;
    const delayFraction = random();
    if (!mix) return { fault: null, status, delayMs: 0 };
    const table: [FaultKind, number][] = [
      ['reset-mid-body', mix.resetMidBody],
      ['reset-after-response', mix.resetAfterResponse],
      ['status-before', mix.statusBefore],
      ['status-after', mix.statusAfter],
      ['delay', mix.delay],
    ];
    let acc = 0;
    for (const [kind, p] of table) {
      acc += p;
      if (roll < acc) return { fault: kind, status, delayMs: Math.round(delayFraction * mix.maxDelayMs) };
    }
    return { fault: null, status, delayMs: 0 };
  };

  const server = net.createServer((client) => {
    sockets.add(client);
    let upstream: net.Socket | null = null;
    let upstreamReady: Promise<net.Socket | null> | null = null;
    let buffer = Buffer.alloc(0);
    /** The request whose answer is awaited on this connection, and what to do with that answer. */
    let current: { req: ProxiedRequest; onAnswer: 'pass' | 'reset' | 'status'; status: number } | null = null;
    let busy = false;
    let closed = false;

    const closeAll = (reset: boolean): void => {
      if (closed) return;
      closed = true;
      if (current && !current.req.done) {
        current.req.done = true;
        changed();
      }
      if (reset) client.resetAndDestroy();
      else client.destroy();
      upstream?.destroy();
      sockets.delete(client);
    };

    const connectUpstream = (): Promise<net.Socket | null> => {
      if (upstreamReady) return upstreamReady;
      upstreamReady = new Promise((resolve) => {
        const up = net.connect({ host, port: options.upstreamPort });
        sockets.add(up);
        let connected = false;
        up.on('connect', () => {
          connected = true;
          upstream = up;
          resolve(up);
        });
        up.on('data', (chunk: Buffer) => {
          const c = current;
          if (!c) return; // nothing asked: ignore
          if (c.req.serverStatus === null) c.req.serverStatus = statusOf(chunk);
          if (c.onAnswer === 'pass') {
            if (c.req.clientStatus === null) {
              c.req.clientStatus = c.req.serverStatus;
              c.req.done = true;
              changed();
            }
            client.write(chunk);
            return;
          }
          // The server has answered (and committed): the client gets a reset or an error page instead.
          c.req.done = true;
          if (c.onAnswer === 'status') {
            c.req.clientStatus = c.status;
            client.end(errorPage(c.status));
            up.destroy();
            closed = true;
            sockets.delete(client);
          } else closeAll(true);
          changed();
        });
        const gone = (): void => {
          sockets.delete(up);
          if (!connected) {
            resolve(null);
            return;
          }
          // The server went away (killed, or closed an idle connection): so does the client's connection.
          closeAll(current !== null && !current.req.done);
        };
        up.on('error', gone);
        up.on('close', gone);
      });
      return upstreamReady;
    };

    const handle = async (head: Buffer, body: Buffer): Promise<void> => {
      const headText = head.toString('latin1');
      const [method = '', path = ''] = (headText.split('\r\n')[0] ?? '').split(' ');
      const { route, table } = routeOf(method, path);
      const req: ProxiedRequest = {
        index: requests.length,
        method,
        path,
        route,
        table,
        bodyRows: route === 'upload' ? countLines(body) : 0,
        fault: null,
        serverStatus: null,
        clientStatus: null,
        done: false,
      };
      requests.push(req);
      const decision = decide();
      const ruleIndex = rules.findIndex((r) => r.match(req));
      const rule = ruleIndex >= 0 ? rules[ruleIndex] : undefined;
      if (rule) rules.splice(ruleIndex, 1);
      req.fault = rule ? rule.fault : decision.fault;
      if (req.fault) faults[req.fault]++;
      changed();
      const whole = Buffer.concat([head, body]);

      if (req.fault === 'capture') {
        req.done = true;
        closeAll(true);
        rule?.resolve({ request: req, bytes: whole });
        changed();
        return;
      }
      if (req.fault === 'status-before') {
        req.clientStatus = decision.status;
        req.done = true;
        client.end(errorPage(decision.status));
        closed = true;
        upstream?.destroy();
        sockets.delete(client);
        rule?.resolve({ request: req, bytes: whole });
        changed();
        return;
      }
      if (req.fault === 'delay' && decision.delayMs > 0) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(() => {
            timers.delete(t);
            resolve();
          }, decision.delayMs);
          timers.add(t);
        });
        if (closed) return;
      }
      const up = await connectUpstream();
      if (closed) return;
      if (!up) {
        // No server behind the proxy: a load balancer answers 503.
        faults['upstream-down']++;
        if (!req.fault) req.fault = 'upstream-down';
        req.clientStatus = 503;
        req.done = true;
        client.end(errorPage(503));
        closed = true;
        sockets.delete(client);
        rule?.resolve({ request: req, bytes: whole });
        changed();
        return;
      }
      current = {
        req,
        onAnswer: req.fault === 'reset-after-response' ? 'reset' : req.fault === 'status-after' ? 'status' : 'pass',
        status: decision.status,
      };
      if (rule) {
        const settle = rule.resolve;
        const wait = (): void => {
          if (req.done) {
            events.off('change', wait);
            settle({ request: req, bytes: whole });
          }
        };
        events.on('change', wait);
      }
      if (req.fault === 'reset-mid-body') {
        // Half the body (at least the head) reaches the server, then both connections are reset.
        up.write(Buffer.concat([head, body.subarray(0, Math.floor(body.length / 2))]), () => {
          req.done = true;
          closeAll(true);
          changed();
        });
        return;
      }
      up.write(whole);
    };

    /** Frames complete requests out of the buffer and handles them one at a time (HTTP/1.1 without pipelining). */
    const pump = async (): Promise<void> => {
      if (busy) return;
      busy = true;
      try {
        for (;;) {
          if (closed) return;
          const end = buffer.indexOf(HEAD_END);
          if (end < 0) return;
          const head = buffer.subarray(0, end + HEAD_END.length);
          const m = /\r\ncontent-length:\s*(\d+)/i.exec(head.toString('latin1'));
          const length = m ? Number(m[1]) : 0;
          if (buffer.length < head.length + length) return;
          const body = buffer.subarray(head.length, head.length + length);
          buffer = buffer.subarray(head.length + length);
          // The previous answer must have started before the next request: clients here do not pipeline.
          await handle(Buffer.from(head), Buffer.from(body));
        }
      } finally {
        busy = false;
      }
    };

    client.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      void pump();
    });
    client.on('error', () => closeAll(false));
    client.on('close', () => closeAll(false));
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  const once = (match: (r: ProxiedRequest) => boolean, fault: FaultKind): Promise<CapturedRequest> =>
    new Promise((resolve) => {
      rules.push({ match, fault, resolve });
    });

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    faults,
    setMix: (m) => {
      mix = m;
    },
    clearRules: () => {
      rules = [];
    },
    once: ((match: (r: ProxiedRequest) => boolean, fault: FaultKind) =>
      fault === 'capture' ? once(match, fault) : once(match, fault).then((c) => c.request)) as FaultProxy['once'],
    replay: (captured) =>
      new Promise((resolve, reject) => {
        const up = net.connect({ host, port: options.upstreamPort });
        sockets.add(up);
        let answered = false;
        up.on('connect', () => up.write(captured.bytes));
        up.on('data', (chunk: Buffer) => {
          if (answered) return;
          answered = true;
          up.destroy();
          sockets.delete(up);
          const s = statusOf(chunk);
          if (s === null) reject(new Error('replay: the server answered something other than HTTP'));
          else resolve(s);
        });
        up.on('error', (e) => {
          sockets.delete(up);
          if (!answered) reject(e);
        });
        up.on('close', () => {
          if (!answered) reject(new Error('replay: the server closed the connection without an answer'));
        });
      }),
    waitFor: (what, predicate, timeoutMs) =>
      new Promise((resolve, reject) => {
        if (predicate()) {
          resolve();
          return;
        }
        const check = (): void => {
          if (!predicate()) return;
          clearTimeout(timer);
          events.off('change', check);
          resolve();
        };
        const timer = setTimeout(() => {
          events.off('change', check);
          reject(new Error(`proxy: gave up after ${timeoutMs} ms waiting for ${what} (${requests.length} requests seen)`));
        }, timeoutMs);
        events.on('change', check);
      }),
    openConnections: () => [...sockets].length,
    resetAll: () => {
      for (const s of sockets) s.resetAndDestroy();
      sockets.clear();
    },
    close: async () => {
      rules = [];
      for (const t of timers) clearTimeout(t);
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
