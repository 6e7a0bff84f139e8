/**
 * TLS as users run it: `rediss://` to a real TLS Redis of this suite's own, and `amqps://` to
 * RabbitMQ through a TLS terminator (the shared broker has no TLS listener and its configuration
 * is not ours to change, so the test puts one in front of it, as a load balancer would). The
 * private CA is trusted the two ways the docs say: `NODE_EXTRA_CA_CERTS`, read by Node at start
 * (so whatever must trust it runs as a child process), and `--tls-ca` / the SDK's `tls.ca`. Client
 * certificates: a Redis with `tls-auth-clients yes` and a terminator that requires one.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTlsServer, type Server, connect as tlsConnect } from 'node:tls';
import { promisify } from 'node:util';
import { RedisStore } from '@lockq/coordinator';
import { LockClient } from '@lockq/worker-sdk';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { amqpRun } from './support/amqp-run.js';
import { AMQP_URL, redisPongs, requireCommand, requireRabbit } from './support/brokers.js';
import { freePort, requireRedisServer } from './support/faults-redis.js';
import { CLI, CoordinatorProcess, WorkerProcess } from './support/processes.js';
import { waitFor } from './support/wait-for.js';

const execFileP = promisify(execFile);


const openssl = await requireCommand('openssl', ['version'], 'the TLS suites');
const redisServer = await requireRedisServer();
const rabbit = await requireRabbit();
const run = amqpRun('tls', { rabbit });

interface Certs {
  readonly dir: string;
  /** The throwaway CA, as NODE_EXTRA_CA_CERTS takes it. */
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
  /** A client certificate the CA signed (CN lockq-client), and its key. */
  readonly clientCertFile: string;
  readonly clientKeyFile: string;
}

/** A throwaway CA, a server certificate it signed for localhost and 127.0.0.1, and a client certificate. */
async function makeCerts(): Promise<Certs> {
  const dir = mkdtempSync(join(tmpdir(), 'lockq-tls-'));
  const f = (name: string) => join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await execFileP('openssl', ['req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '1', '-subj', '/CN=lockq test CA']);
  await execFileP('openssl', ['req', ...ec, '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=localhost']);
  writeFileSync(f('ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  await execFileP('openssl', [
    'x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial',
    '-out', f('server.pem'), '-days', '1', '-extfile', f('ext.cnf'),
  ]);
  await execFileP('openssl', ['req', ...ec, '-keyout', f('client.key'), '-out', f('client.csr'), '-subj', '/CN=lockq-client']);
  writeFileSync(f('client.cnf'), 'extendedKeyUsage=clientAuth\n');
  await execFileP('openssl', [
    'x509', '-req', '-in', f('client.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial',
    '-out', f('client.pem'), '-days', '1', '-extfile', f('client.cnf'),
  ]);
  return {
    dir,
    caFile: f('ca.pem'),
    certFile: f('server.pem'),
    keyFile: f('server.key'),
    clientCertFile: f('client.pem'),
    clientKeyFile: f('client.key'),
  };
}

/** The client side's material as the SDK and RedisStore take it (PEM contents); `cert: false` leaves the certificate out. */
function clientTls(certs: Certs, o: { cert: boolean } = { cert: true }) {
  const ca = readFileSync(certs.caFile);
  return o.cert ? { ca, cert: readFileSync(certs.clientCertFile), key: readFileSync(certs.clientKeyFile) } : { ca };
}

/** The `lockq coordinator` flags that trust the CA and present the client certificate (or only trust, `cert: false`). */
function tlsFlags(certs: Certs, o: { cert: boolean } = { cert: true }): string[] {
  const trust = ['--tls-ca', certs.caFile];
  return o.cert ? [...trust, '--tls-cert', certs.clientCertFile, '--tls-key', certs.clientKeyFile] : trust;
}

/** True when a Redis at 127.0.0.1:`port` answers PING over TLS presenting the client certificate. */
function pongsWithClientCert(port: number, certs: Certs): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, ...clientTls(certs) }, () => socket.write('PING\r\n'));
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.once('data', (reply: Buffer) => done(reply.toString().startsWith('+PONG')));
    socket.once('error', () => done(false));
    socket.setTimeout(1000, () => done(false));
  });
}

/**
 * Runs `start` (which spawns synchronously) with `extra` added to this process's env, then puts
 * the env back: the support classes spawn with a copy of `process.env` and take no env of their own.
 */
function withEnv<T>(extra: Readonly<Record<string, string>>, start: () => T): T {
  const before = Object.fromEntries(Object.keys(extra).map((k) => [k, process.env[k]]));
  Object.assign(process.env, extra);
  try {
    return start();
  } finally {
    for (const [k, v] of Object.entries(before)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

/** A redis-server of this suite's own that speaks only TLS (never the shared one at 6379). */
class TlsRedis {
  readonly #child: ChildProcess;
  readonly #exited: Promise<void>;
  #output = '';

  private constructor(
    readonly port: number,
    certs: Certs,
    readonly authClients: boolean,
  ) {
    // biome-ignore format: one option per line
    this.#child = spawn('redis-server', [
      '--port', '0',
      '--tls-port', String(port),
      '--bind', '127.0.0.1',
      '--tls-cert-file', certs.certFile,
      '--tls-key-file', certs.keyFile,
      '--tls-ca-cert-file', certs.caFile,
      '--tls-auth-clients', authClients ? 'yes' : 'no',
      '--save', '',
      '--appendonly', 'no',
      '--dir', certs.dir,
      '--daemonize', 'no',
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      this.#output = (this.#output + d).slice(-4000);
    });
    this.#child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      this.#output = (this.#output + d).slice(-4000);
    });
    this.#exited = new Promise((resolve) => this.#child.once('exit', () => resolve()));
  }

  /** `authClients`: Redis's `tls-auth-clients yes`, a client without a certificate the CA signed is refused. */
  static async start(certs: Certs, o: { authClients: boolean } = { authClients: false }): Promise<TlsRedis> {
    const redis = new TlsRedis(await freePort(), certs, o.authClients);
    const ca = readFileSync(certs.caFile);
    await waitFor(
      () => {
        if (redis.#child.exitCode !== null) throw new Error(`redis-server exited with ${redis.#child.exitCode}:\n${redis.#output}`);
        return o.authClients ? pongsWithClientCert(redis.port, certs) : redisPongs(redis.port, { ca });
      },
      () => `redis-server to answer PING over TLS on ${redis.port}:\n${redis.#output}`,
      { timeoutMs: 15_000, intervalMs: 20 },
    );
    return redis;
  }

  get url(): string {
    return `rediss://127.0.0.1:${this.port}`;
  }

  async stop(): Promise<void> {
    this.#child.kill('SIGKILL');
    await this.#exited;
  }
}

/**
 * A TLS terminator in front of the shared RabbitMQ: each TLS connection piped to its plain port.
 * `requireClientCert`: only clients presenting a certificate the test CA signed get through, as a
 * RabbitMQ with `ssl_options.verify = verify_peer, fail_if_no_peer_cert = true` would have it.
 */
async function tlsTerminator(certs: Certs, o: { requireClientCert: boolean } = { requireClientCert: false }): Promise<{ server: Server; port: number }> {
  const broker = new URL(AMQP_URL);
  const serverTls = { cert: readFileSync(certs.certFile), key: readFileSync(certs.keyFile) };
  const clientAuth = { ca: readFileSync(certs.caFile), requestCert: true, rejectUnauthorized: true };
  const server = createTlsServer(o.requireClientCert ? { ...serverTls, ...clientAuth } : serverTls, (client) => {
    const upstream = netConnect(Number(broker.port || 5672), broker.hostname);
    client.pipe(upstream).pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  // A client whose handshake fails (the untrusted-CA cases) is just dropped.
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return { server, port: typeof address === 'object' && address !== null ? address.port : 0 };
}

/** Any of Node's certificate verification failures, by message. */
const CERTIFICATE_ERROR = /certificate/i;

describe.skipIf(!openssl || !redisServer)('rediss:// to a TLS-only redis-server', () => {
  let certs: Certs;
  let redis: TlsRedis;
  beforeAll(async () => {
    certs = await makeCerts();
    redis = await TlsRedis.start(certs);
  });
  afterAll(async () => {
    await redis?.stop();
    if (certs !== undefined) rmSync(certs.dir, { recursive: true, force: true });
  });

  it('lockq coordinator trusting the CA through NODE_EXTRA_CA_CERTS reaches Redis over TLS', async () => {
    const c = await withEnv({ NODE_EXTRA_CA_CERTS: certs.caFile }, () =>
      CoordinatorProcess.start(['--transport', 'memory:', '--store', redis.url, '--prefix', `${run.name}.redis`]),
    );
    // The store checks the server's settings once it is connected: answered only over a verified TLS connection.
    await c.line((l) => l.component === 'redis-store' && String(l.msg).includes('appendonly off'), 'the store reading the server settings');
    expect(c.lines.filter((l) => l.component === 'redis-store' && (l.level ?? 0) >= 40 && !String(l.msg).includes('appendonly'))).toEqual([]);
    expect(await c.stop()).toBe(0);
  });

  it('without the CA trusted, the coordinator says it cannot reach Redis, with the certificate error', async () => {
    const c = await CoordinatorProcess.start(['--transport', 'memory:', '--store', redis.url, '--prefix', `${run.name}.redis`]);
    const warned = await c.line((l) => l.component === 'redis-store' && l.level === 40 && /cannot reach Redis/.test(String(l.msg)), 'a warning');
    expect(JSON.stringify(warned.err)).toMatch(CERTIFICATE_ERROR);
    expect(await c.stop()).toBe(0);
  });
});

describe.skipIf(!openssl || !redisServer || !rabbit)('amqps:// through a TLS terminator in front of RabbitMQ', () => {
  let certs: Certs;
  let redis: TlsRedis;
  let terminator: { server: Server; port: number };
  beforeAll(async () => {
    certs = await makeCerts();
    redis = await TlsRedis.start(certs);
    terminator = await tlsTerminator(certs);
  });
  afterAll(async () => {
    await redis?.stop();
    await new Promise((resolve) => (terminator === undefined ? resolve(undefined) : terminator.server.close(resolve)));
    if (certs !== undefined) rmSync(certs.dir, { recursive: true, force: true });
  });

  const amqps = () => `amqps://guest:guest@localhost:${terminator.port}`;

  it('a coordinator on amqps:// and rediss:// claims its partition and answers an SDK worker acquire and release', async () => {
    const prefix = run.prefix();
    const env = { NODE_EXTRA_CA_CERTS: certs.caFile };
    await withEnv(env, () => CoordinatorProcess.start(['--transport', amqps(), '--store', redis.url, '--prefix', prefix]));
    const worker = withEnv(env, () => new WorkerProcess({ url: amqps(), workerId: 'tls-worker', script: 'queue', lock: 'tls-job', prefix }));
    const granted = await worker.event('granted');
    expect(granted.token).toBeGreaterThan(0);
    await worker.event('done'); // the release was answered
    expect(await worker.exited).toBe(0);
    // The partition was claimed in the TLS Redis: its epoch (seeded from the clock) is there.
    const client = new Redis(redis.url, { tls: { ca: readFileSync(certs.caFile) }, lazyConnect: true, maxRetriesPerRequest: 0 });
    try {
      await client.connect();
      expect(await client.get(`{${prefix}:p0}:epoch`)).toMatch(/^[1-9]\d*$/);
    } finally {
      client.disconnect();
    }
  });

  it('without the CA trusted, LockClient.connect and lockq coordinator fail with a certificate error', async () => {
    const prefix = run.prefix();
    // This test process never had NODE_EXTRA_CA_CERTS, so it does not trust the test CA.
    const err: unknown = await LockClient.connect(amqps(), { prefix }).then(
      (c) => c.close().then(() => 'connected'),
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(Error);
    expect(String((err as Error).cause)).toMatch(CERTIFICATE_ERROR);
    const c = new CoordinatorProcess('coordinator', [CLI, 'coordinator', '--admin-port', '0', '--transport', amqps(), '--prefix', prefix]);
    expect(await c.exited).not.toBe(0);
    const all = JSON.stringify([...c.lines, ...c.errLines]);
    expect(all).toMatch(CERTIFICATE_ERROR);
    expect(c.lines.some((l) => l.msg === 'coordinator ready')).toBe(false);
  });
});

/** Any sign that the server turned the connection down for want of an (acceptable) client certificate. */
const CLIENT_CERTIFICATE_REFUSED = /certificate required|ECONNRESET|EPIPE|client certificate/i;

describe.skipIf(!openssl || !redisServer)('rediss:// to a redis-server that requires client certificates (tls-auth-clients yes)', () => {
  let certs: Certs;
  let redis: TlsRedis;
  beforeAll(async () => {
    certs = await makeCerts();
    redis = await TlsRedis.start(certs, { authClients: true });
  });
  afterAll(async () => {
    await redis?.stop();
    if (certs !== undefined) rmSync(certs.dir, { recursive: true, force: true });
  });

  it('lockq coordinator with --tls-ca, --tls-cert and --tls-key reaches Redis (no NODE_EXTRA_CA_CERTS)', async () => {
    const c = await CoordinatorProcess.start(['--transport', 'memory:', '--store', redis.url, '--prefix', `${run.name}.mtls`, ...tlsFlags(certs)]);
    await c.line((l) => l.component === 'redis-store' && String(l.msg).includes('appendonly off'), 'the store reading the server settings');
    expect(c.lines.filter((l) => l.component === 'redis-store' && (l.level ?? 0) >= 40 && !String(l.msg).includes('appendonly'))).toEqual([]);
    expect(await c.stop()).toBe(0);
  });

  it('RedisStore with the tls option claims a partition; without the client certificate it cannot', async () => {
    const store = new RedisStore({ url: redis.url, keyPrefix: `${run.name}.mtls.sdk`, tls: clientTls(certs) });
    try {
      expect((await store.claim(0)).epoch).toBeGreaterThan(0);
    } finally {
      await store.close();
    }
    const bare = new RedisStore({ url: redis.url, keyPrefix: `${run.name}.mtls.sdk`, tls: clientTls(certs, { cert: false }), connectTimeoutMs: 500 });
    try {
      await expect(bare.claim(0)).rejects.toThrow(/Redis is unavailable/);
    } finally {
      await bare.close();
    }
  });

  it('with --tls-ca but no client certificate, the coordinator warns that Redis may require one', async () => {
    const c = await CoordinatorProcess.start(['--transport', 'memory:', '--store', redis.url, '--prefix', `${run.name}.mtls`, ...tlsFlags(certs, { cert: false })]);
    const warned = await c.line((l) => l.component === 'redis-store' && l.level === 40 && /cannot reach Redis/.test(String(l.msg)), 'a warning');
    // The server's alert, or (usually: ioredis writes before the alert arrives) the reset, and the hint that says why.
    expect(JSON.stringify(warned.err)).toMatch(CLIENT_CERTIFICATE_REFUSED);
    expect(String(warned.hint)).toMatch(/require a client certificate.*--tls-cert/);
    expect(c.lines.some((l) => String(l.msg).includes('appendonly'))).toBe(false);
    expect(await c.stop()).toBe(0);
  });
});

describe.skipIf(!openssl || !redisServer || !rabbit)('amqps:// through a terminator that requires client certificates', () => {
  let certs: Certs;
  let redis: TlsRedis;
  let terminator: { server: Server; port: number };
  beforeAll(async () => {
    certs = await makeCerts();
    redis = await TlsRedis.start(certs, { authClients: true });
    terminator = await tlsTerminator(certs, { requireClientCert: true });
  });
  afterAll(async () => {
    await redis?.stop();
    await new Promise((resolve) => (terminator === undefined ? resolve(undefined) : terminator.server.close(resolve)));
    if (certs !== undefined) rmSync(certs.dir, { recursive: true, force: true });
  });

  const amqps = () => `amqps://guest:guest@localhost:${terminator.port}`;

  it('lockq coordinator with --tls-* and an SDK worker with the tls option acquire and release', async () => {
    const prefix = run.prefix();
    await CoordinatorProcess.start(['--transport', amqps(), '--store', redis.url, '--prefix', prefix, ...tlsFlags(certs)]);
    const client = await LockClient.connect(amqps(), { prefix, workerId: 'mtls-worker', tls: clientTls(certs) });
    run.clients.push(client);
    const lease = await client.acquire('mtls-job', { ttlMs: 10_000, waitMs: 5000 });
    expect(lease.token).toBeGreaterThan(0);
    await lease.release();
    // The partition was claimed in the Redis that requires client certificates.
    const check = new Redis(redis.url, { tls: clientTls(certs), lazyConnect: true, maxRetriesPerRequest: 0 });
    try {
      await check.connect();
      expect(await check.get(`{${prefix}:p0}:epoch`)).toMatch(/^[1-9]\d*$/);
    } finally {
      check.disconnect();
    }
  });

  it('without a client certificate, LockClient.connect and lockq coordinator are refused', async () => {
    const prefix = run.prefix();
    const err: unknown = await LockClient.connect(amqps(), { prefix, tls: clientTls(certs, { cert: false }) }).then(
      (c) => c.close().then(() => 'connected'),
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(Error);
    expect(String((err as Error).cause)).toMatch(CLIENT_CERTIFICATE_REFUSED);
    const c = new CoordinatorProcess('coordinator', [CLI, 'coordinator', '--admin-port', '0', '--transport', amqps(), '--prefix', prefix, ...tlsFlags(certs, { cert: false })]);
    expect(await c.exited).not.toBe(0);
    expect(JSON.stringify([...c.lines, ...c.errLines])).toMatch(CLIENT_CERTIFICATE_REFUSED);
    expect(c.lines.some((l) => l.msg === 'coordinator ready')).toBe(false);
  });
});

describe.skipIf(!openssl)('TLS settings are checked at start-up, naming the bad one', () => {
  let certs: Certs;
  beforeAll(async () => {
    certs = await makeCerts();
  });
  afterAll(() => {
    if (certs !== undefined) rmSync(certs.dir, { recursive: true, force: true });
  });

  /** Runs `lockq coordinator` with `args` to its exit; its code and everything it printed. */
  async function coordinatorExit(args: readonly string[]): Promise<{ code: unknown; output: string }> {
    const c = new CoordinatorProcess('coordinator', [CLI, 'coordinator', '--admin-port', '0', ...args]);
    const code = await c.exited;
    return { code, output: JSON.stringify([...c.lines, ...c.errLines]) };
  }

  it('lockq coordinator: a certificate without its key, TLS flags with no TLS connection, a key of another certificate, a missing file', async () => {
    const store = ['--transport', 'memory:', '--store', 'rediss://127.0.0.1:1'];
    const noKey = await coordinatorExit([...store, '--tls-cert', certs.clientCertFile]);
    expect(noKey.code).toBe(2);
    expect(noKey.output).toContain('--tls-cert: given without --tls-key');
    const noTls = await coordinatorExit(['--transport', 'memory:', '--tls-ca', certs.caFile]);
    expect(noTls.code).toBe(2);
    expect(noTls.output).toContain('--tls-ca: no connection uses TLS');
    const mismatch = await coordinatorExit([...store, '--tls-cert', certs.clientCertFile, '--tls-key', certs.keyFile]);
    expect(mismatch.code).toBe(1);
    expect(mismatch.output).toMatch(/--tls-cert \S+client\.pem \/ --tls-key \S+server\.key: .*key values mismatch/);
    const missing = await coordinatorExit([...store, '--tls-ca', join(certs.dir, 'nope.pem')]);
    expect(missing.code).toBe(1);
    expect(missing.output).toMatch(/--tls-ca \S+nope\.pem: cannot read it/);
  });

  it('the SDK and RedisStore: a certificate without its key, a path for contents, tls on a URL without TLS', async () => {
    const tls = clientTls(certs);
    const refused = (p: Promise<unknown>) => p.then(() => 'accepted', (e: unknown) => (e instanceof RangeError ? e.message : String(e)));
    expect(await refused(LockClient.connect('amqps://127.0.0.1:1', { tls: { ca: tls.ca, cert: readFileSync(certs.clientCertFile) } }))).toMatch(/^tls\.cert: given without tls\.key/);
    expect(await refused(LockClient.connect('amqps://127.0.0.1:1', { tls: { ca: certs.caFile } }))).toMatch(/^tls\.ca: expected PEM contents .*not a file path/);
    expect(await refused(LockClient.connect('amqp://127.0.0.1:1', { tls }))).toMatch(/^tls: given for an amqp:\/\/ URL/);
    expect(await refused(LockClient.connect('memory:', { tls }))).toMatch(/^tls: memory: has no connection/);
    expect(() => new RedisStore({ url: 'redis://127.0.0.1:1', tls })).toThrow(/^tls: given for a redis:\/\/ URL/);
    expect(() => new RedisStore({ url: 'rediss://127.0.0.1:1', tls: { ...tls, rejectUnauthorized: false } as never })).toThrow(
      /^tls\.rejectUnauthorized: not an option/,
    );
  });
});
