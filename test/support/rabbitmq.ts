import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { deadLetterDestination, forwardExchange, requestExchange } from '@lockq/protocol';
import { connect } from 'amqplib';
import { AMQP_URL } from './brokers.js';

const execFileP = promisify(execFile);

async function rabbitmqctl(...args: string[]): Promise<string> {
  const { stdout } = await execFileP('rabbitmqctl', ['-q', ...args], { timeout: 30_000 });
  return stdout;
}

/** True when `rabbitmqctl` can talk to the local broker (it needs the node's Erlang cookie). */
export function rabbitmqctlWorks(): Promise<boolean> {
  return rabbitmqctl('list_connections', '--no-table-headers', 'pid').then(
    () => true,
    () => false,
  );
}

export interface BrokerConnection {
  readonly pid: string;
  /** The client-provided `connection_name` ('' when none was given). */
  readonly name: string;
}

/** Every connection the broker has, with the name its client gave it. */
export async function listConnections(): Promise<BrokerConnection[]> {
  const out = await rabbitmqctl('list_connections', '--no-table-headers', 'pid', 'client_properties');
  const found: BrokerConnection[] = [];
  for (const line of out.split('\n')) {
    const pid = line.split('\t')[0]?.trim() ?? '';
    if (!pid.startsWith('<')) continue;
    const name = /\{"connection_name","((?:[^"\\]|\\.)*)"\}/.exec(line)?.[1] ?? '';
    found.push({ pid, name });
  }
  return found;
}

/**
 * Has the broker close (CONNECTION_FORCED) these connections, and only these:
 * `close_all_connections` cannot be limited to one client, and other suites share the broker.
 */
export async function closeConnections(connections: readonly BrokerConnection[], reason: string): Promise<void> {
  await Promise.all(connections.map((c) => rabbitmqctl('close_connection', c.pid, reason)));
}

/** Names of the broker's queues that start with `prefix`. */
export async function queuesStartingWith(prefix: string): Promise<string[]> {
  const out = await rabbitmqctl('list_queues', '--no-table-headers', 'name');
  return out
    .split('\n')
    .map((l) => l.trim())
    .filter((name) => name.startsWith(prefix));
}

/**
 * Deletes what a run made: the queues whose names start with `runPrefix` (found with rabbitmqctl
 * when it works, so the reply queues of killed workers go too), the ones listed in `known`, and
 * the dead-letter, request and forward exchanges of every topology prefix in `prefixes`.
 */
export async function deleteTopology(runPrefix: string, prefixes: readonly string[], known: readonly string[]): Promise<void> {
  const listed = await queuesStartingWith(runPrefix).catch(() => [] as string[]);
  const conn = await connect(AMQP_URL);
  try {
    const ch = await conn.createChannel();
    for (const q of new Set([...listed, ...known])) await ch.deleteQueue(q);
    for (const p of prefixes) for (const x of [deadLetterDestination(p), requestExchange(p), forwardExchange(p)]) await ch.deleteExchange(x);
    await ch.close();
  } finally {
    await conn.close();
  }
}
