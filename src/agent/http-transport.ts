/**
 * HTTP exchanges of the agent with the server, as networks at customers need them: through the
 * proxy the environment names (`HTTPS_PROXY`/`HTTP_PROXY`, except hosts in `NO_PROXY`, as curl
 * reads them), trusting a private CA (`tls.caFile`), presenting a client certificate (`tls.certFile`
 * and `tls.keyFile`, mutual TLS). HTTPS goes through the proxy in a CONNECT tunnel (TLS end to end,
 * the proxy sees only the host name); plain HTTP is sent to the proxy with the absolute URL.
 * node:http(s) with kept-alive connections: a body Buffer is written as is (fetch would copy it).
 */
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, type RequestOptions as HttpsRequestOptions, request as httpsRequest } from 'node:https';
import type { Duplex, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { connect as tlsConnect } from 'node:tls';

/** Proxy settings, from the environment (read by the CLI: `proxySettingsFrom(process.env)`). */
export interface ProxySettings {
  httpsProxy?: string | undefined;
  httpProxy?: string | undefined;
  /** Comma- or space-separated hosts (a leading dot or none: the domain and its subdomains), `host:port`, or `*`. */
  noProxy?: string | undefined;
}

/** TLS material (PEM text) for the server's certificate and the agent's own. */
export interface TlsMaterial {
  ca?: string | undefined;
  cert?: string | undefined;
  key?: string | undefined;
}

export interface TransportOptions {
  proxy?: ProxySettings | undefined;
  tls?: TlsMaterial | undefined;
}

/** The proxy variables, in either case (lower case first, as curl does). */
export function proxySettingsFrom(env: Readonly<Record<string, string | undefined>>): ProxySettings {
  const pick = (name: string): string | undefined => env[name.toLowerCase()] || env[name] || undefined;
  return { httpsProxy: pick('HTTPS_PROXY'), httpProxy: pick('HTTP_PROXY'), noProxy: pick('NO_PROXY') };
}

function defaultPort(u: URL): string {
  return u.port || (u.protocol === 'https:' ? '443' : '80');
}

/** The proxy to reach `target` through, or null for a direct connection. */
export function proxyFor(target: URL, settings: ProxySettings | undefined): URL | null {
  const raw = target.protocol === 'https:' ? settings?.httpsProxy : settings?.httpProxy;
  if (!raw) return null;
  const host = target.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  for (const entry of (settings?.noProxy ?? '').split(/[\s,]+/).filter(Boolean)) {
    if (entry === '*') return null;
    const m = /^(.*?)(?::(\d+))?$/.exec(entry.toLowerCase()) as RegExpExecArray;
    const name = (m[1] as string).replace(/^\*?\./, '').replace(/^\[|\]$/g, '');
    if (m[2] && m[2] !== defaultPort(target)) continue;
    if (host === name || host.endsWith(`.${name}`)) return null;
  }
  return new URL(raw.includes('://') ? raw : `http://${raw}`);
}

function proxyAuthorization(proxy: URL): Record<string, string> {
  if (!proxy.username) return {};
  const credentials = `${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`;
  return { 'proxy-authorization': `Basic ${Buffer.from(credentials).toString('base64')}` };
}

/** An HTTPS agent whose connections are CONNECT tunnels through `proxy`, TLS inside. */
class TunnelAgent extends HttpsAgent {
  constructor(
    private readonly proxy: URL,
    options: ConstructorParameters<typeof HttpsAgent>[0],
  ) {
    super(options);
  }

  override createConnection(options: HttpsRequestOptions, callback?: (err: Error | null, stream: Duplex) => void): Duplex | null | undefined {
    const done = callback ?? (() => {});
    const host = String(options.host ?? options.hostname ?? 'localhost').replace(/^\[|\]$/g, '');
    const authority = `${host.includes(':') ? `[${host}]` : host}:${options.port ?? 443}`;
    const connect = httpRequest({
      host: this.proxy.hostname.replace(/^\[|\]$/g, ''),
      port: this.proxy.port || 80,
      method: 'CONNECT',
      path: authority,
      headers: { host: authority, ...proxyAuthorization(this.proxy) },
    });
    connect.once('connect', (res, socket) => {
      if (res.statusCode !== 200) {
        socket.destroy();
        done(Object.assign(new Error(`proxy ${this.proxy.host} refused the tunnel to ${authority}: ${res.statusCode}`), { code: 'EPROXY' }), socket);
        return;
      }
      const servername = options.servername ?? (/^[\d.:]+$/.test(host) ? undefined : host);
      done(null, tlsConnect({ ...(options as object), socket, ...(servername ? { servername } : {}) }));
    });
    connect.once('error', (err) => done(err, undefined as unknown as Duplex));
    connect.end();
    return undefined;
  }
}

const AGENT_OPTIONS = { keepAlive: true, maxSockets: 16 } as const;

/** A body streamed from its source with backpressure (a file), of a length known beforehand. */
export interface StreamBody {
  stream: Readable;
  length: number;
}

export class HttpTransport {
  private readonly httpAgent = new HttpAgent(AGENT_OPTIONS);
  private readonly httpsAgent: HttpsAgent;

  constructor(
    serverUrl: string,
    private readonly options: TransportOptions = {},
  ) {
    const tls = options.tls ?? {};
    const tlsOptions = { ...(tls.ca ? { ca: tls.ca } : {}), ...(tls.cert ? { cert: tls.cert } : {}), ...(tls.key ? { key: tls.key } : {}) };
    const proxy = proxyFor(new URL(serverUrl), options.proxy);
    this.httpsAgent =
      proxy && proxy.protocol === 'http:' ? new TunnelAgent(proxy, { ...AGENT_OPTIONS, ...tlsOptions }) : new HttpsAgent({ ...AGENT_OPTIONS, ...tlsOptions });
  }

  /**
   * One exchange: the status, the body as text and any Retry-After. Rejects on network errors and
   * on the timeout (AbortSignal; null: none, for an exchange that lasts as long as the server works).
   * A stream body is read only as fast as the socket takes it (fetch in Node 20 reads it whole first).
   */
  request(
    method: string,
    url: string,
    body: Buffer | StreamBody | undefined,
    headers: Record<string, string>,
    timeoutMs: number | null,
  ): Promise<{ status: number; text: string; retryAfter?: string | undefined }> {
    const target = new URL(url);
    const secure = target.protocol === 'https:';
    // Plain HTTP through a proxy: the request goes to the proxy, naming the absolute URL.
    const viaProxy = secure ? null : proxyFor(target, this.options.proxy);
    const requestUrl = viaProxy ? new URL(`${viaProxy.origin}/`) : target;
    return new Promise((resolve, reject) => {
      const req = (secure ? httpsRequest : httpRequest)(
        requestUrl,
        {
          method,
          agent: secure ? this.httpsAgent : this.httpAgent,
          ...(viaProxy ? { path: target.href } : {}),
          headers: {
            ...(viaProxy ? { host: target.host, ...proxyAuthorization(viaProxy) } : {}),
            ...headers,
            ...(body ? { 'content-length': String(body.length) } : {}),
          },
          ...(timeoutMs !== null ? { signal: AbortSignal.timeout(timeoutMs) } : {}),
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8'), retryAfter: res.headers['retry-after'] }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      if (body === undefined || Buffer.isBuffer(body)) req.end(body);
      else pipeline(body.stream, req).catch(reject);
    });
  }

  /** Closes kept-alive connections. */
  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }
}
