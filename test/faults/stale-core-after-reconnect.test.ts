/**
 * Regression test for a bug the coordinator-stop fault runs found (fixed in 3b3a560):
 *
 * A coordinator that lost a partition's consumer (a broker connection dropped for missed
 * heartbeats while the process was paused, a network blip, a forced close) kept that partition's
 * in-memory core. The broker meanwhile made the standby active, which claimed the partition
 * (epoch + 1) and served it. When the first coordinator was active again later (the other one
 * died), it decided its first batch on the stale core, its commit was fenced (StaleEpochError),
 * and it "stood by": it stopped consuming for `standbyPauseMs` (1 s by default) although nobody
 * else was there, and only then claimed — a wasted batch plus the pause on that take-over. In the
 * SIGSTOP runs the resumed coordinator was fenced at once only on the partition where it had a
 * lease to expire and kept a stale core for the other one. Transports now report a lost consumer
 * and the runner drops the partition's state then.
 *
 * The test reproduces it in process on the shared RabbitMQ with two AmqpServerTransports: the
 * broker force-closes the active coordinator's connection (rabbitmqctl close_connection, only
 * this test's connections), the standby takes over and serves, the first one reconnects as the
 * standby, then the active one stops; the first one must serve the next request promptly,
 * without being fenced on the way.
 */
import { randomUUID } from 'node:crypto';
import { AmqpServerTransport, Coordinator, MemoryStore } from '@lockq/coordinator';
import { LockClient } from '@lockq/worker-sdk';
import { deadLetterDestination, requestDestination } from '@lockq/protocol';
import { connect } from 'amqplib';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { AMQP_URL, requireRabbit } from '../support/brokers.js';
import { closeConnectionsNamed, rabbitmqctlWorks } from '../support/faults-rabbitmq.js';
import { waitFor } from '../support/wait-for.js';

const ready = (await requireRabbit()) && (await rabbitmqctlWorks());
const STANDBY_PAUSE_MS = 3000;


interface Outcome {
  readonly firstEpochHolder: string;
  /** Time from the standby stopping to the next grant, served by the reconnected coordinator. */
  readonly servedAfterMs: number;
  /** What the reconnected coordinator logged at warn or above meanwhile. */
  readonly warnings: readonly string[];
}

const prefix = `lockq-faults-stale-${process.pid}-${randomUUID().slice(0, 8)}`;
const cleanup: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const step of cleanup.reverse()) await step().catch(() => undefined);
  const conn = await connect(AMQP_URL);
  const ch = await conn.createChannel();
  await ch.deleteQueue(requestDestination(0, prefix));
  await ch.deleteQueue(deadLetterDestination(prefix));
  await ch.deleteExchange(deadLetterDestination(prefix));
  await conn.close();
});

let scenario: Promise<Outcome> | undefined;
function runScenario(): Promise<Outcome> {
  scenario ??= (async () => {
    const store = new MemoryStore({ journal: true });
    const lines: { level: number; msg: string; at: number }[] = [];
    const logger = pino({ level: 'info' }, { write: (l: string) => void lines.push({ ...(JSON.parse(l) as { level: number; msg: string }), at: Date.now() }) });
    let reconnects = 0;
    const start = async (name: string, onReconnect?: () => void) => {
      const transport = new AmqpServerTransport({
        url: AMQP_URL,
        prefix,
        connectionName: `${prefix} ${name}`,
        reconnect: { initialMs: 20, maxMs: 200 },
        ...(onReconnect === undefined ? {} : { onReconnect }),
      });
      const c = await Coordinator.start({ transport, store, standbyPauseMs: STANDBY_PAUSE_MS, ...(name === 'first' ? { logger } : {}) });
      cleanup.push(() => c.stop());
      return c;
    };
    await start('first', () => reconnects++);
    const second = await start('second');
    const client = await LockClient.connect(AMQP_URL, { workerId: 'stale-w', prefix, requestTimeoutMs: 20_000 });
    cleanup.push(() => client.close());

    await (await client.acquire('a', { ttlMs: 60_000 })).release(); // the first claims (epoch 1)
    // The broker drops the first coordinator's connection; the second becomes the active consumer.
    expect(await closeConnectionsNamed(`${prefix} first`, 'lockq fault test')).toBe(1);
    // onReconnect fires once consuming has resumed: the first now stands behind the second.
    await waitFor(() => reconnects > 0, 'the first coordinator to reconnect', { timeoutMs: 5000, intervalMs: 25 });
    await (await client.acquire('b', { ttlMs: 60_000 })).release(); // the second claims (epoch 2) and serves
    const holder = lines.some((l) => l.msg === 'partition claimed') ? 'first' : 'none';

    const from = lines.length;
    const stoppedAt = Date.now();
    await second.stop(); // the first is the active consumer again, with its epoch-1 core
    await (await client.acquire('c', { ttlMs: 60_000 })).release();
    return {
      firstEpochHolder: holder,
      servedAfterMs: Date.now() - stoppedAt,
      warnings: lines.slice(from).filter((l) => l.level >= 40).map((l) => l.msg),
    };
  })();
  return scenario;
}

describe.skipIf(!ready)('a coordinator that lost its consumer and is active again later', () => {
  it('serves again (after whatever pause)', async () => {
    const r = await runScenario();
    expect(r.firstEpochHolder).toBe('first');
    expect(r.servedAfterMs).toBeLessThan(20_000);
  }, 60_000);

  // Under the bug it decided on its stale core, was fenced, and paused `standbyPauseMs` (3 s
  // here) before claiming.
  it('claims afresh at once instead of deciding on its stale state', async () => {
    const r = await runScenario();
    expect(r.warnings).toEqual([]);
    expect(r.servedAfterMs).toBeLessThan(STANDBY_PAUSE_MS);
  }, 60_000);
});
