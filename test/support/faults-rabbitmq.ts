import { execFile } from 'node:child_process';
import { Socket } from 'node:net';
import { promisify } from 'node:util';
import { AMQP_URL } from './brokers.js';
import { waitFor } from './wait-for.js';

const execFileP = promisify(execFile);

async function rabbitmqctl(args: readonly string[], timeoutMs = 60_000): Promise<string> {
  const { stdout } = await execFileP('rabbitmqctl', ['-q', ...args], { timeout: timeoutMs });
  return stdout;
}

/** True when `rabbitmqctl` can talk to the local broker (it needs the node's Erlang cookie). */
export function rabbitmqctlWorks(): Promise<boolean> {
  return rabbitmqctl(['list_connections', '--no-table-headers', 'pid']).then(
    () => true,
    () => false,
  );
}

/**
 * Has the broker force-close the connections whose client-given name is exactly `name`, and only
 * those (other suites share the broker). Returns how many it closed.
 */
export async function closeConnectionsNamed(name: string, reason: string): Promise<number> {
  const out = await rabbitmqctl(['list_connections', '--no-table-headers', 'pid', 'client_properties']);
  const pids: string[] = [];
  for (const line of out.split('\n')) {
    const pid = line.split('\t')[0]?.trim() ?? '';
    const given = /\{"connection_name","((?:[^"\\]|\\.)*)"\}/.exec(line)?.[1];
    if (pid.startsWith('<') && given === name) pids.push(pid);
  }
  await Promise.all(pids.map((pid) => rabbitmqctl(['close_connection', pid, reason])));
  return pids.length;
}

/** True when RabbitMQ answers the AMQP 0-9-1 protocol header with a connection.start frame. */
export function amqpAnswers(url = AMQP_URL): Promise<boolean> {
  const u = new URL(url);
  const host = u.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1';
  const port = u.port === '' ? 5672 : Number(u.port);
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1500, () => done(false));
    socket.once('error', () => done(false));
    socket.once('data', (reply) => done(reply[0] === 1));
    socket.connect(port, host, () => socket.write(new Uint8Array([0x41, 0x4d, 0x51, 0x50, 0, 0, 9, 1])));
  });
}

/**
 * Restarts the RabbitMQ application of the SHARED local broker (`rabbitmqctl stop_app`, then
 * `start_app`) and waits until it answers AMQP again. Every client of the broker is disconnected;
 * durable (quorum) queues keep their messages. Returns the moments the broker went down and
 * answered again.
 */
export async function restartRabbitApp(timeoutMs = 120_000): Promise<{ stoppedAt: number; backAt: number }> {
  const stoppedAt = Date.now();
  await rabbitmqctl(['stop_app'], timeoutMs);
  await rabbitmqctl(['start_app'], timeoutMs);
  await waitFor(amqpAnswers, 'RabbitMQ to answer after start_app', { timeoutMs, intervalMs: 100 });
  return { stoppedAt, backAt: Date.now() };
}
