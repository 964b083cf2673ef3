/**
 * Networks as they are at customers, on loopback: the agent (the built binary) reaches the server
 * through a CONNECT proxy named by HTTPS_PROXY (a node:http proxy here that counts its tunnels),
 * unless NO_PROXY names the host; over HTTPS signed by a private CA (tls.caFile, generated with
 * openssl) with a client certificate the server side requires (mutual TLS).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, request as httpRequest } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { parse as parseConnectionString } from 'pg-connection-string';
import { describe, expect, it } from 'vitest';

import { proxyFor } from '../../src/agent/http-transport.js';
import { toConnectionUrl } from '../../src/shared/connection-string.js';
import { createDatabase, startTestServer } from '../support/fixtures.js';
import { tidemark } from '../support/run-cli.js';

/** A test CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA. */
function makeCertificates(): Record<'dir' | 'ca' | 'serverCert' | 'serverKey' | 'clientCert' | 'clientKey', string> {
  const dir = mkdtempSync(join(tmpdir(), 'tidemark-tls-'));
  const f = (name: string) => join(dir, name);
  const ossl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  ossl('req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=tidemark test CA');
  writeFileSync(f('server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  ossl('req', ...ec, '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=127.0.0.1');
  ossl(
    'x509',
    '-req',
    '-in',
    f('server.csr'),
    '-CA',
    f('ca.pem'),
    '-CAkey',
    f('ca.key'),
    '-CAcreateserial',
    '-out',
    f('server.pem'),
    '-days',
    '2',
    '-extfile',
    f('server.ext'),
  );
  ossl('req', ...ec, '-keyout', f('client.key'), '-out', f('client.csr'), '-subj', '/CN=acme agent');
  ossl('x509', '-req', '-in', f('client.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('client.pem'), '-days', '2');
  return { dir, ca: f('ca.pem'), serverCert: f('server.pem'), serverKey: f('server.key'), clientCert: f('client.pem'), clientKey: f('client.key') };
}

/** HTTPS in front of the (plain HTTP) test server, requiring a client certificate signed by the CA. */
async function startTlsFront(target: string, certs: ReturnType<typeof makeCertificates>) {
  const upstream = new URL(target);
  const clients: string[] = [];
  const server = createHttpsServer(
    { cert: readFileSync(certs.serverCert), key: readFileSync(certs.serverKey), ca: readFileSync(certs.ca), requestCert: true, rejectUnauthorized: true },
    (req, res) => {
      clients.push(String((req.socket as TLSSocket).getPeerCertificate().subject?.CN));
      const out = httpRequest({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      });
      out.on('error', () => res.destroy());
      req.pipe(out);
    },
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    clients,
    async [Symbol.asyncDispose]() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** A forward proxy that only tunnels (CONNECT), counting the tunnels it opened. */
async function startConnectProxy() {
  const state = { tunnels: 0 };
  const sockets = new Set<Socket>();
  const server = createHttpServer((_req, res) => res.writeHead(405).end());
  server.on('connect', (req, client: Socket, head: Buffer) => {
    state.tunnels++;
    const [host, port] = (req.url ?? '').split(':');
    const upstream = connect(Number(port), host, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    state,
    async [Symbol.asyncDispose]() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe('agent networks', { timeout: 300_000 }, () => {
  it('picks the proxy for a URL as curl does: HTTPS_PROXY for https, NO_PROXY hosts, domains and ports go direct', () => {
    const settings = { httpsProxy: 'http://proxy:3128', httpProxy: 'proxy:8080', noProxy: 'localhost, .corp.example, db.example:8443' };
    expect(proxyFor(new URL('https://sync.example.com'), settings)?.href).toBe('http://proxy:3128/');
    expect(proxyFor(new URL('http://sync.example.com'), settings)?.href).toBe('http://proxy:8080/');
    expect(proxyFor(new URL('https://localhost:8080'), settings)).toBeNull();
    expect(proxyFor(new URL('https://a.corp.example'), settings)).toBeNull();
    expect(proxyFor(new URL('https://corp.example'), settings)).toBeNull();
    expect(proxyFor(new URL('https://db.example:8443'), settings)).toBeNull();
    expect(proxyFor(new URL('https://db.example'), settings)?.host).toBe('proxy:3128');
    expect(proxyFor(new URL('https://anything'), { ...settings, noProxy: '*' })).toBeNull();
    expect(proxyFor(new URL('https://anything'), {})).toBeNull();
  });

  it('syncs through a CONNECT proxy over HTTPS with a private CA and a client certificate; NO_PROXY goes direct', async () => {
    const certs = makeCertificates();
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await using front = await startTlsFront(server.url, certs);
    await using proxy = await startConnectProxy();
    await local.query(`create table items (id int primary key, name text)`);
    await local.query(`insert into items select i, 'item ' || i from generate_series(1, 100) i`);
    const reg = await server.register('acme');
    const file = join(certs.dir, 'agent.yaml');
    const lines = [
      `databaseUrl: ${local.url}`,
      `serverUrl: ${front.url}`,
      `clientId: ${reg.clientId}`,
      `databaseId: ${reg.databaseId}`,
      `apiKey: ${reg.apiKey}`,
      'tls:',
      `  caFile: ${certs.ca}`,
    ];
    writeFileSync(file, `${lines.join('\n')}\n`);
    expect((await tidemark(['track', '--config', file, 'public.items'])).code).toBe(0);

    // The server side asks for a client certificate: without one, no run.
    const noCert = await tidemark(['sync', '--once', '--config', file], { HTTPS_PROXY: proxy.url });
    expect(noCert.code).toBe(1);
    expect(proxy.state.tunnels).toBeGreaterThan(0);
    expect(front.clients).toEqual([]);

    writeFileSync(file, `${[...lines, `  certFile: ${certs.clientCert}`, `  keyFile: ${certs.clientKey}`].join('\n')}\n`);
    const tunnelsBefore = proxy.state.tunnels;
    const viaProxy = await tidemark(['sync', '--once', '--config', file], { HTTPS_PROXY: proxy.url });
    expect(viaProxy.stderr).toBe('');
    expect(viaProxy.code).toBe(0);
    expect(proxy.state.tunnels).toBeGreaterThan(tunnelsBefore);
    expect(new Set(front.clients)).toEqual(new Set(['acme agent']));
    const [row] = await server.db.query<{ n: number }>(`select count(*)::int as n from public.items`);
    expect(row?.n).toBe(100);

    // NO_PROXY names the host: direct, no new tunnel. rotate-key goes the same way as the agent.
    await local.query(`insert into items values (101, 'direct')`);
    const tunnels = proxy.state.tunnels;
    const direct = await tidemark(['sync', '--once', '--config', file], { HTTPS_PROXY: proxy.url, NO_PROXY: 'localhost,127.0.0.1' });
    expect(direct.code).toBe(0);
    expect(proxy.state.tunnels).toBe(tunnels);
    const rotated = await tidemark(['rotate-key', '--config', file, '--overlap', '0s'], { HTTPS_PROXY: proxy.url });
    expect(rotated.stderr).toBe('');
    expect(rotated.code).toBe(0);
    expect(proxy.state.tunnels).toBeGreaterThan(tunnels);

    // Without the CA file, the server's certificate is not trusted.
    writeFileSync(file, `${lines.slice(0, 4).join('\n')}\napiKey: ${readFileSync(file, 'utf8').match(/apiKey: (\S+)/)?.[1]}\n`);
    const untrusted = await tidemark(['sync', '--once', '--config', file]);
    expect(untrusted.code).toBe(1);
    expect(untrusted.stdout).toMatch(/server unreachable at https:\/\/127\.0\.0\.1:\d+: \w*(CERT|SIGNATURE|SELF_SIGNED)\w*/);
  });
});

describe('registration over TLS', () => {
  it("registers with an enrollment token through HTTPS with a private CA and a client certificate, read from the agent config's tls section", async () => {
    const certs = makeCertificates();
    await using server = await startTestServer();
    await using front = await startTlsFront(server.url, certs);
    const token = await tidemark(['enroll-token', '--server', server.url, '--admin-key', server.adminKey, '--client', 'acme']);
    expect(token.code).toBe(0);
    const { token: enrollToken } = JSON.parse(token.stdout) as { token: string };
    const file = join(certs.dir, 'agent.yaml');
    const tls = ['tls:', `  caFile: ${certs.ca}`, `  certFile: ${certs.clientCert}`, `  keyFile: ${certs.clientKey}`];
    writeFileSync(file, `databaseUrl: postgresql://127.0.0.1/erp\n${tls.join('\n')}\n`);
    const reg = await tidemark(['register', '--server', front.url, '--enroll-token', enrollToken, '--name', 'Lyon', '--config', file]);
    expect(reg.stderr).toBe('');
    expect(reg.code).toBe(0);
    expect(readFileSync(file, 'utf8')).toMatch(/apiKey: tmk_/);
    expect(front.clients).toEqual(['acme agent']);
    // A tls section the agent would refuse is refused here too, in one line.
    writeFileSync(file, `tls:\n  certFile: ${certs.clientCert}\n`);
    const bad = await tidemark(['register', '--server', front.url, '--enroll-token', enrollToken, '--name', 'Lyon', '--config', file]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr).toMatch(/certFile and keyFile go together/);
  });
});

describe('local database TLS', () => {
  it('takes sslmode, sslrootcert, sslcert and sslkey from the URL or the keyword/value form, as libpq does', () => {
    const certs = makeCertificates();
    for (const text of [
      `host=db.internal dbname=erp sslmode=verify-full sslrootcert=${certs.ca} sslcert=${certs.clientCert} sslkey=${certs.clientKey}`,
      `postgresql://db.internal/erp?sslmode=verify-full&sslrootcert=${encodeURIComponent(certs.ca)}&sslcert=${encodeURIComponent(certs.clientCert)}&sslkey=${encodeURIComponent(certs.clientKey)}`,
    ]) {
      const parsed = parseConnectionString(toConnectionUrl(text));
      expect(parsed.host).toBe('db.internal');
      const ssl = parsed.ssl as { ca?: string; cert?: string; key?: string; rejectUnauthorized?: boolean };
      expect(ssl.ca).toBe(readFileSync(certs.ca, 'utf8'));
      expect(ssl.cert).toBe(readFileSync(certs.clientCert, 'utf8'));
      expect(ssl.key).toBe(readFileSync(certs.clientKey, 'utf8'));
      expect(ssl.rejectUnauthorized).not.toBe(false);
    }
    expect(parseConnectionString(toConnectionUrl('host=db dbname=erp sslmode=disable')).ssl).toBe(false);
  });
});
