import type { ChannelModel } from 'amqplib';
import type { Logger } from 'pino';
import { LockqError } from '../errors.js';

// AMQP plumbing both sides share. amqplib is imported lazily (types only up here) so that
// importing a package's transports never loads a broker driver an application does not use.

/**
 * A broker operation failed: not connected (reconnecting), the connection dropped with the
 * operation in flight, or the broker refused a message (no such queue, queue full). Code
 * `TRANSPORT_ERROR`, retriable.
 */
export class AmqpTransportError extends LockqError {
  override name = 'AmqpTransportError';
  /** The broker refused this message (see the transports' `send`); it was not delivered. */
  readonly refused: boolean;
  constructor(message: string, options?: ErrorOptions & { readonly refused?: boolean }) {
    super('TRANSPORT_ERROR', message, options);
    this.refused = options?.refused ?? false;
  }
}

/**
 * Connects with the settings both sides use (TCP no-delay, a bounded connect, a name shown in
 * the broker's tools) and the listeners both need; `onClose` runs when the connection is gone.
 */
export async function openAmqpConnection(
  o: { readonly connectUrl: string; readonly connectTimeoutMs: number; readonly connectionName: string },
  log: Logger | undefined,
  onClose: (err: Error) => void,
): Promise<ChannelModel> {
  const amqp = await import('amqplib');
  const conn = await amqp.connect(o.connectUrl, {
    noDelay: true,
    timeout: o.connectTimeoutMs,
    clientProperties: { connection_name: o.connectionName },
  });
  // An 'error' event without a listener would crash the process; 'close' always follows it.
  conn.on('error', (err: Error) => log?.warn({ err }, 'broker connection error'));
  // A broker short of memory or disk blocks publishers: confirms stall until it unblocks.
  conn.on('blocked', (reason: string) => log?.warn({ reason }, 'the broker blocked this connection'));
  conn.on('unblocked', () => log?.info('the broker unblocked this connection'));
  conn.on('close', (err?: Error) => onClose(err ?? new Error('connection closed')));
  return conn;
}

/** Adds the heartbeat to an `amqp://` / `amqps://` URL unless the URL already sets one. */
export function amqpUrlWithHeartbeat(url: string, heartbeatMs: number): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch (cause) {
    throw new RangeError('url: not a valid URL', { cause });
  }
  if (u.protocol !== 'amqp:' && u.protocol !== 'amqps:') {
    throw new RangeError(`url: expected amqp:// or amqps://, got ${JSON.stringify(u.protocol)}`);
  }
  if (!u.searchParams.has('heartbeat')) u.searchParams.set('heartbeat', String(Math.ceil(heartbeatMs / 1000)));
  return u.toString();
}

/** The URL without credentials, for logs. */
export function amqpUrlForLogs(url: string): string {
  const u = new URL(url);
  return `${u.protocol}//${u.host}${u.pathname}`;
}
