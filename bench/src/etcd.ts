import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EtcdLockFailedError, Etcd3 } from 'etcd3';
import { inBatches } from './lockq-amqp.js';
import { sleep, type Contender, type LockSystem } from './workload.js';

/**
 * etcd's locks, for the store suite: a private single-member etcd started for the run (the
 * Debian `etcd-server` package; its binary is `etcd`), on free loopback ports with a temporary
 * data dir (fsync on, as etcd always runs), stopped and removed afterwards. Clients use the v3
 * gRPC API through the `etcd3` npm client, each on its own connection.
 */

export interface EtcdServer {
  readonly endpoint: string;
  readonly version: string;
  readonly dataDir: string;
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Starts etcd, or resolves a reason to skip when it cannot (not installed, did not come up). */
export async function startEtcd(binary = process.env.LOCKQ_BENCH_ETCD ?? 'etcd'): Promise<EtcdServer | { readonly skipped: string }> {
  const [clientPort, peerPort] = [await freePort(), await freePort()];
  const dataDir = await mkdtemp(join(tmpdir(), 'lockq-bench-etcd-'));
  const endpoint = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const child = spawn(
    binary,
    [
      '--name=lockq-bench',
      `--data-dir=${dataDir}`,
      `--listen-client-urls=${endpoint}`,
      `--advertise-client-urls=${endpoint}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=lockq-bench=${peer}`,
      '--logger=zap',
      '--log-level=error',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-2000);
  });
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
  // Never leave it running, whatever happens to this process.
  const kill = () => child.kill('SIGKILL');
  process.once('exit', kill);
  const stop = async () => {
    process.off('exit', kill);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(kill, 5000);
      await exited(child);
      clearTimeout(timer);
    }
    await rm(dataDir, { recursive: true, force: true });
  };
  const deadline = performance.now() + 15_000;
  for (;;) {
    const failed = await Promise.race([spawnError, sleep(100).then(() => undefined)]);
    if (failed !== undefined) {
      await stop();
      const missing = (failed as NodeJS.ErrnoException).code === 'ENOENT';
      return { skipped: missing ? `no ${binary} binary (apt-get install -y etcd-server etcd-client)` : `${binary} did not start: ${failed.message}` };
    }
    if (child.exitCode !== null) {
      await stop();
      return { skipped: `${binary} exited with code ${child.exitCode}: ${stderr.trim().split('\n').pop() ?? ''}` };
    }
    try {
      const res = await fetch(`${endpoint}/version`);
      if (res.ok) {
        const body = (await res.json()) as { etcdserver?: string };
        return { endpoint, version: body.etcdserver ?? '?', dataDir, stop };
      }
    } catch {
      // not listening yet
    }
    if (performance.now() > deadline) {
      await stop();
      return { skipped: `${binary} did not answer on ${endpoint} within 15 s` };
    }
  }
}

export interface EtcdSystems {
  /** A session lease per client (granted once), lock = put-if-absent txn on it, unlock = delete. */
  readonly session: LockSystem;
  /** etcd3's own `client.lock(key)`: a lease per lock (grant, keep-alive stream, txn, revoke). */
  readonly lockHelper: LockSystem;
  close(): Promise<void>;
}

export async function openEtcd(endpoint: string, workers: number): Promise<EtcdSystems> {
  const prefix = `lockq-bench-${randomUUID().slice(0, 8)}`;
  const clients = await inBatches(workers, 16, async () => {
    // A local subchannel pool: each client its own connection, like each lockq worker.
    const client = new Etcd3({ hosts: endpoint, grpcOptions: { 'grpc.use_local_subchannel_pool': 1 } });
    const lease = client.lease(30);
    lease.on('lost', () => {});
    const leaseId = await lease.grant();
    return { client, lease, leaseId };
  });
  const session: Contender[] = clients.map(({ client, leaseId }) => ({
    async acquire(name) {
      const key = `${prefix}/${name}`;
      const res = await client.if(key, 'Create', '==', 0).then(client.put(key).value(leaseId).lease(leaseId)).commit();
      if (!res.succeeded) return null;
      return async () => {
        await client.delete().key(key).exec();
      };
    },
  }));
  const lockHelper: Contender[] = clients.map(({ client }) => ({
    async acquire(name) {
      const lock = client.lock(`${prefix}/${name}`).ttl(30);
      try {
        await lock.acquire();
      } catch (err) {
        if (err instanceof EtcdLockFailedError) return null;
        throw err;
      }
      return () => lock.release();
    },
  }));
  const systems: EtcdSystems = {
    session: { label: 'etcd (session lease, txn + delete)', workers: session, messages: () => Number.NaN },
    lockHelper: { label: 'etcd (etcd3 client.lock())', workers: lockHelper, messages: () => Number.NaN },
    async close() {
      await Promise.all(clients.map(({ lease }) => lease.revoke().catch(() => undefined)));
      await clients[0]?.client.delete().prefix(`${prefix}/`).exec().catch(() => undefined);
      for (const { client } of clients) client.close();
    },
  };
  for (const s of [systems.session, systems.lockHelper]) {
    await Promise.all(s.workers.map(async (w, i) => (await w.acquire(`warm-up:${i}`))?.()));
  }
  return systems;
}
