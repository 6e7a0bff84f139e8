import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { type AddressInfo, connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { type JournalEntry, MemoryStore, partitionKeys, RedisStore, SEED_TOKENS_PER_MS, StaleEpochError } from '../src/store/index.js';
import { REDIS_URL, requireRedis } from '../../test/support/brokers.js';
import { elapse, waitFor } from '../../test/support/wait-for.js';
import { defineStoreContract, requests, snapshotOf } from './store.contract.js';

const redisUp = await requireRedis();
/** Every key this run writes on the shared Redis starts with `{<runPrefix>`; deleted in afterAll. */
const runPrefix = `lockq-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
let stores = 0;

afterAll(async () => {
  if (!redisUp) return;
  const redis = new Redis(REDIS_URL);
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `{${runPrefix}*`, 'COUNT', 1000);
    if (keys.length > 0) await redis.del(...keys);
    cursor = next;
  } while (cursor !== '0');
  await redis.quit();
});

describe.skipIf(!redisUp)('RedisStore on the shared Redis', () => {
  // The contract counts epochs and ceilings from an empty store: a clock before 2025 seeds nothing.
  defineStoreContract('RedisStore', () => new RedisStore({ url: REDIS_URL, keyPrefix: `${runPrefix}-${stores++}`, wallClockMs: () => 0 }));

  it('a partition moved here from a coordinator without a durable store continues above its epoch and tokens', async () => {
    // Before the claim was seeded, Redis started the partition at epoch 1 and token 1: workers that
    // had heard the store-less term's (clock-seeded) epoch ignored the new term, and tokens fell.
    const before = await new MemoryStore().claim(0);
    const store = new RedisStore({ url: REDIS_URL, keyPrefix: `${runPrefix}-moved` });
    try {
      const claimed = await store.claim(0);
      expect(claimed.epoch).toBeGreaterThan(before.epoch);
      expect(claimed.tokenCeiling).toBeGreaterThanOrEqual(before.tokenCeiling + SEED_TOKENS_PER_MS);
      // Seeding never lowers what Redis has: a reserved ceiling above the seed stays, epochs still count up.
      const reserved = claimed.tokenCeiling + 50_000;
      await store.append(0, claimed.epoch, { now: 1, requests: [], tokenCeiling: reserved });
      const next = await store.claim(0);
      expect(next.epoch).toBeGreaterThan(claimed.epoch);
      expect(next.tokenCeiling).toBe(reserved);
    } finally {
      await store.close();
    }
  });

  it('keeps a partition in four keys under one hash tag', async () => {
    const keyPrefix = `${runPrefix}-layout`;
    const store = new RedisStore({ url: REDIS_URL, keyPrefix, wallClockMs: () => 0 });
    const redis = new Redis(REDIS_URL);
    try {
      const { epoch } = await store.claim(3);
      await store.snapshot(3, epoch, snapshotOf(3, 1));
      await store.append(3, epoch, { now: 1, requests: requests(1, 2), tokenCeiling: 10_000 });
      const k = partitionKeys(keyPrefix, 3);
      expect(k).toEqual({
        epoch: `{${keyPrefix}:p3}:epoch`,
        ceiling: `{${keyPrefix}:p3}:ceiling`,
        snapshot: `{${keyPrefix}:p3}:snapshot`,
        journal: `{${keyPrefix}:p3}:journal`,
      });
      expect(await Promise.all([k.epoch, k.ceiling, k.snapshot, k.journal].map((key) => redis.type(key)))).toEqual(['string', 'string', 'string', 'list']);
      expect(await redis.get(k.epoch)).toBe('1');
      expect(await redis.get(k.ceiling)).toBe('10000');
    } finally {
      await store.close();
      await redis.quit();
    }
  });

  it('loads its scripts again after Redis forgets them (NOSCRIPT)', async () => {
    const store = new RedisStore({ url: REDIS_URL, keyPrefix: `${runPrefix}-noscript` });
    const redis = new Redis(REDIS_URL);
    try {
      const { epoch } = await store.claim(0);
      await redis.script('FLUSH');
      await store.append(0, epoch, { now: 1, requests: [] });
      await redis.script('FLUSH');
      await expect(store.append(0, epoch + 1, { now: 2, requests: [] })).rejects.toBeInstanceOf(StaleEpochError);
      expect((await store.claim(0)).journal).toEqual([{ now: 1, requests: [] }]);
    } finally {
      await store.close();
      await redis.quit();
    }
  });

  it('fails at once after close', async () => {
    const store = new RedisStore({ url: REDIS_URL, keyPrefix: `${runPrefix}-closed` });
    await store.claim(0);
    await store.close();
    await store.close();
    await expect(store.claim(0)).rejects.toThrow(/closed/);
  });
});

describe('RedisStore without a Redis', () => {
  it('fails within connectTimeoutMs, and at once when closed while waiting', async () => {
    const url = `redis://127.0.0.1:${await freePort()}`;
    const store = new RedisStore({ url, keyPrefix: 'none', connectTimeoutMs: 300 });
    const started = performance.now();
    await expect(store.claim(0)).rejects.toThrow(/unavailable/);
    expect(performance.now() - started).toBeLessThan(1000);
    const waiting = store.append(0, 1, { now: 1, requests: [] });
    await store.close();
    await expect(waiting).rejects.toThrow(/closed/);
  });
});

// ---- against a redis-server of our own, to crash and restart it -------------------------------

const haveRedisServer = spawnSync('redis-server', ['--version']).status === 0;
if (!haveRedisServer) {
  if (process.env.CI === 'true') throw new Error('redis-server is not on PATH; the Redis durability tests need it under CI');
  console.warn('\n*** SKIPPING Redis durability tests: redis-server is not on PATH ***\n');
}

/** A redis-server child with the settings lockq needs: every acknowledged write fsynced to the AOF. */
class RedisChild {
  readonly dir = mkdtempSync(join(tmpdir(), 'lockq-redis-'));
  port = 0;
  #child: ChildProcess | undefined;

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    if (this.port === 0) this.port = await freePort();
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--appendonly', 'yes', '--appendfsync', 'always', '--save', ''];
    const child = spawn('redis-server', args, { stdio: 'ignore' });
    this.#child = child;
    await waitFor(
      () => {
        if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}`);
        return answersPing(this.port);
      },
      'redis-server to come up',
      { timeoutMs: 10_000, intervalMs: 20 },
    );
  }

  /** A crash: SIGKILL, no shutdown, no final fsync. */
  async kill9(): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }

  async destroy(): Promise<void> {
    await this.kill9();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** True when the Redis on `port` answers PING (not while it is still loading its AOF). */
function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(200, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (data) => done(data.toString().startsWith('+PONG')));
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

describe.skipIf(!haveRedisServer)('RedisStore against a redis-server that crashes', () => {
  const server = new RedisChild();
  const open: RedisStore[] = [];
  const store = (): RedisStore => {
    const s = new RedisStore({ url: server.url, keyPrefix: 'crash', wallClockMs: () => 0 });
    open.push(s);
    return s;
  };
  afterAll(async () => {
    await Promise.all(open.map((s) => s.close()));
    await server.destroy();
  });

  it('keeps every acknowledged write across kill -9 and a restart on the same directory', async () => {
    await server.start();
    const before = store();
    const { epoch } = await before.claim(0);
    const entries: JournalEntry[] = [];
    for (let i = 0; i < 20; i++) {
      const e: JournalEntry = i % 7 === 0 ? { now: i + 0.5, requests: requests(i, 10), tokenCeiling: (i + 1) * 10_000 } : { now: i + 0.5, requests: requests(i, 10) };
      await before.append(0, epoch, e);
      if (i === 9) {
        await before.snapshot(0, epoch, snapshotOf(0, 5));
        entries.length = 0;
      } else {
        entries.push(e);
      }
    }
    const other = await before.claim(1);
    await server.kill9();
    await server.start();
    const after = store();
    expect(await after.claim(0)).toStrictEqual({ epoch: epoch + 1, tokenCeiling: 150_000, snapshot: snapshotOf(0, 5), journal: entries });
    expect((await after.claim(1)).epoch).toBe(other.epoch + 1);
  });

  it('a write while Redis is down fails within bounded time; the same store works once it is back', async () => {
    const s = store();
    const { epoch } = await s.claim(2);
    await s.append(2, epoch, { now: 1, requests: requests(1, 1) });
    await server.kill9();

    // Neither hangs nor is queued: each fails within connectTimeoutMs (default 2 s) of being issued.
    for (const op of [() => s.append(2, epoch, { now: 2, requests: requests(2, 1) }), () => s.claim(2)]) {
      const started = performance.now();
      await expect(op()).rejects.toThrow();
      expect(performance.now() - started).toBeLessThan(3000);
    }

    await server.start();
    // The same instance reconnects in the background; its next operation succeeds.
    await waitFor(
      () =>
        s.append(2, epoch, { now: 4, requests: [] }).then(
          () => true,
          () => false,
        ),
      'an append to succeed once Redis is back',
      { timeoutMs: 5000, intervalMs: 50 },
    );
    // Nothing the failed writes carried reached Redis later (no offline queue, no re-send).
    await elapse(200);
    expect((await s.claim(2)).journal).toStrictEqual([{ now: 1, requests: requests(1, 1) }, { now: 4, requests: [] }]);
  });
});
