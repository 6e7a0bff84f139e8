/**
 * What every suite that runs `lockq coordinator` processes on RabbitMQ sets up alike: a run name
 * that starts every queue it makes, fresh topology prefixes under it, the SDK clients and child
 * processes of each test ended after it, and the run's queues deleted at the end.
 */
import { existsSync } from 'node:fs';
import { deadLetterDestination, requestDestination } from '@lockq/protocol';
import type { LockClient } from '@lockq/worker-sdk';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { CLI, killAll } from './processes.js';
import { deleteTopology } from './rabbitmq.js';

export interface AmqpRunOptions {
  /** False when RabbitMQ is not there (the suite is skipped): nothing to delete. */
  readonly rabbit: boolean;
  /** Partitions whose request queues each prefix has. @defaultValue 1 */
  readonly partitions?: number;
  /** End clients and processes after each test, or once after the whole file. @defaultValue 'each' */
  readonly end?: 'each' | 'all';
  /** Queues of a prefix besides its request and dead-letter queues (reply queues are found by name). */
  readonly extraQueues?: (prefix: string) => readonly string[];
}

export interface AmqpRun {
  /** Starts every queue and exchange name of this run. */
  readonly name: string;
  /** The prefixes handed out so far. */
  readonly prefixes: readonly string[];
  /** A fresh topology prefix: its own request, reply and dead-letter queues. */
  prefix(): string;
  /** Clients to close when the test (or the file) ends. */
  readonly clients: LockClient[];
}

/** Registers the hooks of an AMQP suite; call at the top level of a test file. */
export function amqpRun(kind: string, options: AmqpRunOptions): AmqpRun {
  const name = `${kind}${Date.now().toString(36)}${process.pid.toString(36)}`;
  const prefixes: string[] = [];
  const clients: LockClient[] = [];
  const end = async (): Promise<void> => {
    await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
    await killAll();
  };
  beforeAll(() => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build first (npx tsc -b)`);
  });
  if ((options.end ?? 'each') === 'each') afterEach(end);
  afterAll(async () => {
    await end();
    if (!options.rabbit || prefixes.length === 0) return;
    const partitions = options.partitions ?? 1;
    const known = prefixes.flatMap((p) => [
      ...Array.from({ length: partitions }, (_, i) => requestDestination(i, p)),
      deadLetterDestination(p),
      ...(options.extraQueues?.(p) ?? []),
    ]);
    await deleteTopology(name, prefixes, known);
  });
  return {
    name,
    prefixes,
    clients,
    prefix: () => {
      const p = `${name}.${prefixes.length + 1}`;
      prefixes.push(p);
      return p;
    },
  };
}
