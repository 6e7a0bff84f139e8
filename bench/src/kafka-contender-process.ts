import { randomUUID } from 'node:crypto';
import { type Lease, LockClient } from '@lockq/worker-sdk';
import { AmqpClientTransport, type ClientTransport } from '@lockq/worker-sdk/transport';
import { applyKafkajsIdleFix } from './kafka-idle-fix.js';
import { CountingKafkaClientTransport } from './kafka-lockq.js';

/**
 * One worker process of the Kafka suite's hot lock (started by kafka-contenders.ts): a
 * LockClient per system under test (lockq over Kafka, lockq over RabbitMQ), each on its own
 * connection, driven by the parent over the IPC channel. The parent runs the workload
 * (workload.ts's hotLock) and asks this process to acquire and release; the lock itself moves
 * between processes through the broker, as between real workers.
 *
 * argv[2]: JSON {@link ProcessConfig}. Messages in: {@link Command}; out: {@link Report}.
 */

/** One system this process has a worker in. */
export interface WorkerSpec {
  /** The parent's name for the system. */
  readonly key: string;
  readonly url: string;
  readonly prefix: string;
}

export interface ProcessConfig {
  readonly workerId: string;
  readonly systems: readonly WorkerSpec[];
}

export type Command =
  | { readonly type: 'acquire'; readonly id: number; readonly key: string; readonly name: string }
  | { readonly type: 'release'; readonly id: number }
  | { readonly type: 'close' };

export type Report =
  /** Connected; the reply address of each system's client, for the parent's clean-up. */
  | { readonly type: 'ready'; readonly addresses: Readonly<Record<string, string>> }
  | { readonly type: 'failed'; readonly message: string }
  /** `sent`: what this process's client of that system has published so far (requests and forwards). */
  | { readonly type: 'granted' | 'released'; readonly id: number; readonly sent: number }
  | { readonly type: 'error'; readonly id: number; readonly message: string };

/** A worker's AMQP transport, counting what it publishes: requests and forwarded grants. */
class CountingAmqpClientTransport extends AmqpClientTransport {
  readonly #count: { n: number };
  constructor(options: ConstructorParameters<typeof AmqpClientTransport>[0], count: { n: number }) {
    super(options);
    this.#count = count;
  }
  override send(partition: number, body: Uint8Array): Promise<void> {
    this.#count.n++;
    return super.send(partition, body);
  }
  override forward(address: string, body: Uint8Array): Promise<void> {
    this.#count.n++;
    return super.forward(address, body);
  }
}

interface Worker {
  readonly client: LockClient;
  readonly address: string;
  readonly sent: { n: number };
}

function send(report: Report): void {
  process.send?.(report);
}

const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

async function connect(workerId: string, spec: WorkerSpec): Promise<Worker> {
  const sent = { n: 0 };
  const options = { url: spec.url, workerId, instance: randomUUID().slice(0, 8), prefix: spec.prefix };
  const transport: ClientTransport = spec.url.startsWith('kafka:')
    ? new CountingKafkaClientTransport({ ...options, clientId: 'lockq-bench-worker' }, sent)
    : new CountingAmqpClientTransport(options, sent);
  // One client per system in this process, never of one lock: no hand-off skips the broker.
  const client = await LockClient.connect(spec.url, { workerId, prefix: spec.prefix, localHandOff: false, transport });
  return { client, address: transport.replyAddress, sent };
}

async function main(): Promise<void> {
  applyKafkajsIdleFix(false); // as the parent has it
  const config = JSON.parse(process.argv[2] ?? '{}') as ProcessConfig;
  const workers = new Map<string, Worker>();
  const leases = new Map<number, { lease: Lease; worker: Worker }>();
  let closing = false;
  const close = async () => {
    if (closing) return;
    closing = true;
    await Promise.all([...workers.values()].map((w) => w.client.close().catch(() => undefined)));
    process.exit(0);
  };
  // The parent gone (killed, or its channel closed): nothing is left to do here.
  process.on('disconnect', () => void close());
  // A Ctrl-C reaches the whole process group: the parent stops the run and then closes this process.
  process.on('SIGINT', () => {});
  process.on('message', (raw) => {
    const c = raw as Command;
    if (c.type === 'close') {
      void close();
      return;
    }
    if (c.type === 'acquire') {
      const worker = workers.get(c.key);
      if (worker === undefined) {
        send({ type: 'error', id: c.id, message: `no worker for ${c.key}` });
        return;
      }
      worker.client.acquire(c.name, { ttlMs: 10_000, waitMs: 60_000 }).then(
        (lease) => {
          leases.set(c.id, { lease, worker });
          send({ type: 'granted', id: c.id, sent: worker.sent.n });
        },
        (err: unknown) => send({ type: 'error', id: c.id, message: message(err) }),
      );
      return;
    }
    const held = leases.get(c.id);
    leases.delete(c.id);
    if (held === undefined) {
      send({ type: 'error', id: c.id, message: `no lease ${c.id}` });
      return;
    }
    held.lease.release().then(
      () => send({ type: 'released', id: c.id, sent: held.worker.sent.n }),
      (err: unknown) => send({ type: 'error', id: c.id, message: message(err) }),
    );
  });
  try {
    for (const spec of config.systems) workers.set(spec.key, await connect(config.workerId, spec));
  } catch (err) {
    send({ type: 'failed', message: message(err) });
    await close();
    return;
  }
  send({ type: 'ready', addresses: Object.fromEntries([...workers].map(([key, w]) => [key, w.address])) });
}

void main();
