/**
 * A take-over with Kafka as lockq's only dependency: two `lockq coordinator --transport kafka://…
 * --store kafka: --identity off` processes, one active and one standby, and SDK worker
 * processes. The active one is killed with SIGKILL; the group gives the partition to the
 * standby, which restores it from the changelog topic before deciding: the hold and the queue
 * are there, tokens keep rising, and the waiter is granted once the holder releases.
 *
 * Needs `npx tsc -b` first and a broker (`npm run kafka`). The run's topics and groups are
 * deleted at the end.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { LockView } from '@lockq/protocol';
import kafkajs from 'kafkajs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { WorkerConfig } from './fixtures/src/worker-config.js';
import { KAFKA_BROKERS, requireKafka } from './support/brokers.js';
import { CLI, CoordinatorProcess, cleanEnv, killAll, type LogLine, WORKER, WorkerProcess } from './support/processes.js';
import { waitFor } from './support/wait-for.js';

const available = await requireKafka();

/** Short group timings (the test broker allows sessions down to 1 s): the take-over waits about one session. */
const SESSION_MS = 3000;
const URL = `kafka://${KAFKA_BROKERS}?sessionTimeoutMs=${SESSION_MS}&heartbeatIntervalMs=200&maxWaitMs=100`;
/** Every topic and group this run makes starts with this. */
const RUN = `rk${Date.now().toString(36)}${process.pid.toString(36)}`;

function coordinator(prefix: string): Promise<CoordinatorProcess> {
  return CoordinatorProcess.start(['--transport', URL, '--store', 'kafka:', '--identity', 'off', '--prefix', prefix]);
}

function worker(prefix: string, id: string, config: Omit<WorkerConfig, 'url' | 'workerId' | 'prefix'>): WorkerProcess {
  return new WorkerProcess({ url: URL, prefix, workerId: `${prefix}-${id}`, ...config });
}

/** The runner's line for a claim: a term begun, with what it restored. */
const claimedTerm = (l: LogLine) => l.msg === 'partition claimed' && typeof l.epoch === 'number';

async function view(admin: string, lock: string): Promise<LockView | null> {
  const res = await fetch(`${admin}/v1/locks/${encodeURIComponent(lock)}`);
  return res.status === 404 ? null : ((await res.json()) as LockView);
}

beforeAll(() => {
  for (const built of [CLI, WORKER]) if (!existsSync(built)) throw new Error(`${built} is missing: build first (npx tsc -b)`);
});
afterEach(async () => {
  await killAll();
});
afterAll(async () => {
  if (!available) return;
  const admin = new kafkajs.Kafka({ brokers: KAFKA_BROKERS.split(','), clientId: 'lockq-test', logLevel: kafkajs.logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    const ours = (name: string) => name.startsWith(`${RUN}.`);
    const topics = (await admin.listTopics()).filter(ours);
    if (topics.length > 0) await admin.deleteTopics({ topics });
    const groups = (await admin.listGroups()).groups.map((g) => g.groupId).filter(ours);
    if (groups.length > 0) await admin.deleteGroups(groups).catch(() => undefined);
  } finally {
    await admin.disconnect();
  }
}, 60_000);

describe('lockq coordinator --store kafka: is refused without a kafka:// transport', () => {
  it.each([
    [['--transport', 'memory:', '--store', 'kafka:'], '--store: kafka: needs a kafka://'],
    [['--transport', 'amqp://127.0.0.1', '--store', 'kafka:'], '--store: kafka: needs a kafka://'],
    [['--transport', 'kafka://127.0.0.1:9092', '--identity', 'off', '--store', 'kafka://127.0.0.1:9092'], '--store: kafka: takes nothing after it'],
  ])('%j: a usage error, before anything is opened', (args, message) => {
    const run = spawnSync(process.execPath, [CLI, 'coordinator', '--admin-port', '0', ...args], { env: cleanEnv(), encoding: 'utf8', timeout: 20_000 });
    expect(run.status).toBe(2);
    expect(run.stderr).toContain(message);
  });
});

describe.skipIf(!available)('a take-over with the Kafka store: the standby restores the partition from the changelog', () => {
  it('SIGKILL of the active coordinator: the hold and the queue survive, tokens keep rising, the waiter is granted after the release', async () => {
    const prefix = `${RUN}.1`;
    const first = await coordinator(prefix);
    const second = await coordinator(prefix); // a standby: the group leaves the partition with the first

    const gate = worker(prefix, 'gate', { script: 'gate', lock: 'job', ttlMs: 20_000 });
    const held = await gate.event('granted', 30_000);
    const waiter = worker(prefix, 'waiter', { script: 'queue', lock: 'job', ttlMs: 20_000, waitMs: 60_000 });
    expect((await waiter.event('queued', 30_000)).position).toBe(1);
    const before = await view(first.admin, 'job');
    expect(before?.holders.map((h) => [h.worker, h.token])).toEqual([[gate.config.workerId, held.token]]);
    expect(before?.waiters.map((w) => w.worker)).toEqual([waiter.config.workerId]);
    const firstTerm = await first.line(claimedTerm, 'the first coordinator’s term');
    expect(second.lines.some(claimedTerm)).toBe(false);

    const killedAt = Date.now();
    first.signal('SIGKILL');
    expect(await first.exited).toBe('SIGKILL');
    // The partition is claimed on its first delivery after the group moves it: workers' heartbeats and renewals are that.
    const claimed = await second.line(claimedTerm, 'the standby to claim the partition', 30_000);
    const claimedAt = Number(claimed.time);
    expect(claimed.epoch).toBeGreaterThan(Number(firstTerm.epoch));
    expect(claimed.snapshot === true || Number(claimed.replayed) > 0).toBe(true); // restored, not started afresh

    // Restored: the same holder with the same token, the same waiter first in line.
    const after = await waitFor(() => view(second.admin, 'job'), 'the lock on the new coordinator', { timeoutMs: 10_000, intervalMs: 50 });
    expect(after.holders.map((h) => [h.worker, h.token])).toEqual([[gate.config.workerId, held.token]]);
    expect(after.waiters.map((w) => [w.worker, w.position])).toEqual([[waiter.config.workerId, 1]]);
    expect(gate.events('error')).toEqual([]);

    gate.say('release');
    expect((await gate.event('released', 30_000)).token).toBe(held.token);
    const granted = await waiter.event('granted', 30_000);
    expect(granted.token).toBeGreaterThan(held.token!);
    expect(await Promise.all([gate.exited, waiter.exited])).toEqual([0, 0]);

    // A new hold on the new term: tokens still rising.
    const later = worker(prefix, 'later', { script: 'queue', lock: 'job', ttlMs: 5_000 });
    expect((await later.event('granted', 30_000)).token).toBeGreaterThan(granted.token!);
    expect(await later.exited).toBe(0);
    // The group gave the standby the partition (its producer fenced the dead one's) before the runner's claim, which waits for a delivery.
    const moved = second.lines.find((l) => l.msg === 'partition claimed' && l.component === 'kafka-server-transport');
    const read = second.lines.find((l) => l.msg === 'claimed from the changelog');
    expect(read).toMatchObject({ component: 'kafka-store', partition: 0, epoch: claimed.epoch });
    console.info(
      `take-over with the Kafka store (session timeout ${SESSION_MS} ms): the group moved the partition ${Number(moved?.time) - killedAt} ms after SIGKILL, ` +
        `the first delivery claimed it from the changelog ${claimedAt - killedAt} ms after (the store's claim: ${Number(read?.totalMs).toFixed(0)} ms, ` +
        `${read?.records} records read in ${Number(read?.readMs).toFixed(0)} ms), the waiter was granted ${granted.at - killedAt} ms after ` +
        `(epoch ${firstTerm.epoch} -> ${claimed.epoch}, replayed ${claimed.replayed} entries, snapshot ${claimed.snapshot})`,
    );
    expect(claimedAt - killedAt).toBeLessThan(SESSION_MS + 7000);
    expect(await second.stop()).toBe(0);
  }, 120_000);
});
