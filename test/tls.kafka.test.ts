/**
 * TLS on the Kafka transport (`kafkas://`), against a broker of this suite's own that speaks only
 * TLS and requires a client certificate (`ssl.client.auth=required`), with a throwaway CA made
 * with openssl (test/support/kafka-tls-broker.ts). The shared broker at 9092 has no TLS listener
 * and is not this suite's to change; this one is started from the same jars and deleted after.
 *
 * The coordinator runs as users run it, from the built CLI with `--tls-*` files (needs
 * `npx tsc -b`); the worker is the SDK in this process with the `tls` option. This process never
 * trusts the test CA on its own (no NODE_EXTRA_CA_CERTS), so leaving `tls.ca` out shows an
 * untrusted broker.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import type { LockView } from '@lockq/protocol';
import { LockClient } from '@lockq/worker-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireCommand } from './support/brokers.js';
import { KafkaTlsBroker, makeTestCerts, type TestCerts } from './support/kafka-tls-broker.js';
import { CLI, CoordinatorProcess, killAll } from './support/processes.js';

const openssl = await requireCommand('openssl', ['version'], 'the Kafka TLS suites');
const java = await requireCommand('java', ['-version'], 'the Kafka TLS suites');

/** Short group timings (the broker allows sessions down to 1 s), so a coordinator's start and stop are quick. */
const TIMINGS = 'sessionTimeoutMs=3000&heartbeatIntervalMs=200&maxWaitMs=100';
const RUN = `k5${Date.now().toString(36)}`;
let prefixes = 0;
const prefix = () => `${RUN}.${++prefixes}`;

/** What the SDK takes (PEM contents); leave out the CA or the client certificate to see each refused. */
function clientTls(certs: TestCerts, o: { ca?: boolean; cert?: boolean } = {}) {
  return {
    ...(o.ca === false ? {} : { ca: readFileSync(certs.caFile) }),
    ...(o.cert === false ? {} : { cert: readFileSync(certs.clientCertFile), key: readFileSync(certs.clientKeyFile) }),
  };
}

/** The `lockq coordinator` flags for the same material. */
function tlsFlags(certs: TestCerts, o: { ca?: boolean; cert?: boolean } = {}): string[] {
  return [
    ...(o.ca === false ? [] : ['--tls-ca', certs.caFile]),
    ...(o.cert === false ? [] : ['--tls-cert', certs.clientCertFile, '--tls-key', certs.clientKeyFile]),
  ];
}

/** `LockClient.connect`'s rejection (or 'connected'). */
function connectError(url: string, options: Parameters<typeof LockClient.connect>[1]): Promise<unknown> {
  return LockClient.connect(url, options).then(
    (c) => c.close().then(() => 'connected'),
    (e: unknown) => e,
  );
}

/** Runs `lockq coordinator` with `args` to its exit; its code and everything it printed. */
async function coordinatorExit(args: readonly string[]): Promise<{ code: unknown; output: string; ready: boolean }> {
  const c = new CoordinatorProcess('coordinator', [CLI, 'coordinator', '--admin-port', '0', ...args]);
  const code = await c.exited;
  return { code, output: JSON.stringify([...c.lines, ...c.errLines]), ready: c.lines.some((l) => l.msg === 'coordinator ready') };
}

/** The error and the messages of its causes, as one string. */
function withCauses(err: unknown): string {
  const parts: string[] = [];
  for (let e = err as { message?: unknown; cause?: unknown } | undefined, depth = 0; e !== undefined && e !== null && depth < 8; depth++) {
    parts.push(String(e.message));
    e = e.cause as typeof e;
  }
  return parts.join(' <- ');
}

beforeAll(() => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build first (npx tsc -b)`);
});

describe.skipIf(!openssl || !java)('kafkas:// to a TLS-only Kafka broker that requires client certificates', () => {
  let certs: TestCerts;
  let broker: KafkaTlsBroker;
  beforeAll(async () => {
    certs = await makeTestCerts();
    broker = await KafkaTlsBroker.start(certs);
  }, 90_000);
  afterAll(async () => {
    await killAll();
    await broker?.stop();
    if (certs !== undefined) rmSync(certs.dir, { recursive: true, force: true });
  });

  const url = (host = 'localhost') => `kafkas://${host}:${broker.port}?${TIMINGS}`;

  it('lockq coordinator with --tls-ca, --tls-cert and --tls-key, and an SDK worker with tls, acquire and release', async () => {
    const p = prefix();
    const coord = await CoordinatorProcess.start(['--transport', url(), '--identity', 'off', '--prefix', p, ...tlsFlags(certs)]);
    const client = await LockClient.connect(url(), { prefix: p, workerId: 'kafka-tls-worker', tls: clientTls(certs) });
    try {
      const lease = await client.acquire('tls-job', { ttlMs: 10_000, waitMs: 10_000 });
      expect(lease.token).toBeGreaterThan(0);
      const held = (await (await fetch(`${coord.admin}/v1/locks/tls-job`)).json()) as LockView;
      expect(held.holders.map((h) => [h.worker, h.token])).toEqual([['kafka-tls-worker', lease.token]]);
      await lease.release();
      const res = await fetch(`${coord.admin}/v1/locks/tls-job`); // 404 once the lock has no state left
      const after = res.status === 404 ? null : ((await res.json()) as LockView);
      expect(after?.holders ?? []).toEqual([]);
    } finally {
      await client.close();
    }
    expect(coord.lines.some((l) => l.msg === 'partition claimed' && l.component === 'kafka-server-transport')).toBe(true);
    expect(JSON.stringify(coord.lines)).not.toMatch(/certificate|ssl|tls alert/i);
    expect(await coord.stop()).toBe(0);
  });

  it('without the CA trusted, LockClient.connect and lockq coordinator fail with the certificate error, saying to give the CA', async () => {
    const p = prefix();
    const [sdk, cli] = await Promise.all([
      connectError(url(), { prefix: p, tls: clientTls(certs, { ca: false }) }),
      coordinatorExit(['--transport', url(), '--identity', 'off', '--prefix', p, ...tlsFlags(certs, { ca: false })]),
    ]);
    expect(sdk).toBeInstanceOf(Error);
    expect((sdk as Error).message).toMatch(/^cannot open a Kafka transport at kafkas:\/\/localhost:\d+: the broker's certificate did not verify: give tls\.ca/);
    expect(withCauses(sdk)).toMatch(/unable to verify the first certificate/);
    expect(cli.code).toBe(1);
    expect(cli.ready).toBe(false);
    expect(cli.output).toMatch(/cannot set up the topics at kafkas:\/\/localhost:\d+: the broker's certificate did not verify: give tls\.ca \(--tls-ca\)/);
    expect(cli.output).toMatch(/unable to verify the first certificate/);
  });

  it('without a client certificate the broker refuses LockClient.connect and lockq coordinator, and they say it may require one', async () => {
    const p = prefix();
    const [sdk, cli] = await Promise.all([
      connectError(url(), { prefix: p, tls: clientTls(certs, { cert: false }) }),
      coordinatorExit(['--transport', url(), '--identity', 'off', '--prefix', p, ...tlsFlags(certs, { cert: false })]),
    ]);
    // The broker's alert (bad_certificate, or certificate_required under TLS 1.3), or the reset when the client wrote first.
    const refused = /alert bad certificate|certificate required|ECONNRESET|Closed connection/i;
    expect(sdk).toBeInstanceOf(Error);
    expect((sdk as Error).message).toMatch(/the broker may require a client certificate \(ssl\.client\.auth=required\): give tls\.cert and tls\.key/);
    expect(withCauses(sdk)).toMatch(refused);
    expect(cli.code).toBe(1);
    expect(cli.ready).toBe(false);
    expect(cli.output).toMatch(/the broker may require a client certificate .*--tls-cert, --tls-key/);
    expect(cli.output).toMatch(refused);
  });

  it("the broker's certificate must name the host connected to: kafkas://127.0.0.1 is refused for a certificate of localhost", async () => {
    const err = await connectError(url('127.0.0.1'), { prefix: prefix(), tls: clientTls(certs) });
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/the broker's certificate does not name the host connected to/);
    expect(withCauses(err)).toMatch(/IP: 127\.0\.0\.1 is not in the cert's list/);
  });
});

describe.skipIf(!openssl)('TLS on Kafka: settings refused at start-up', () => {
  let certs: TestCerts;
  beforeAll(async () => {
    certs = await makeTestCerts();
  });
  afterAll(() => {
    if (certs !== undefined) rmSync(certs.dir, { recursive: true, force: true });
  });

  it('the SDK: tls with a kafka:// URL, a certificate without its key', async () => {
    const refused = (p: Promise<unknown>) => p.then(() => 'accepted', (e: unknown) => (e instanceof RangeError ? e.message : String(e)));
    expect(await refused(LockClient.connect('kafka://127.0.0.1:1', { tls: clientTls(certs) }))).toMatch(/^tls: given for a kafka:\/\/ URL, which does not use TLS; use kafkas:\/\//);
    const [ca, cert] = [readFileSync(certs.caFile), readFileSync(certs.clientCertFile)];
    expect(await refused(LockClient.connect('kafkas://127.0.0.1:1', { tls: { ca, cert } }))).toMatch(/^tls\.cert: given without tls\.key/);
  });

  it('lockq coordinator: --tls-* with a kafka:// transport, kafkas:// without --identity off', async () => {
    const [plain, identity] = await Promise.all([
      coordinatorExit(['--transport', 'kafka://127.0.0.1:1', '--identity', 'off', ...tlsFlags(certs)]),
      coordinatorExit(['--transport', 'kafkas://127.0.0.1:1', ...tlsFlags(certs)]),
    ]);
    expect(plain.code).toBe(2);
    expect(plain.output).toContain('--tls-ca: no connection uses TLS (use an amqps:// or kafkas:// --transport');
    expect(identity.code).toBe(2);
    expect(identity.output).toContain('cannot vouch for senders, so identity cannot be required; pass --identity off');
  });
});
