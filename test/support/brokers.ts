import { execFile } from 'node:child_process';
import { Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { promisify } from 'node:util';

/** The RabbitMQ the suites use. @defaultValue amqp://guest:guest@127.0.0.1:5672 */
export const AMQP_URL = process.env.LOCKQ_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
/** The Redis the suites use. @defaultValue redis://127.0.0.1:6379 */
export const REDIS_URL = process.env.LOCKQ_REDIS_URL ?? 'redis://127.0.0.1:6379';

const CHECK_TIMEOUT_MS = 1500;

/**
 * Opens a TCP connection (TLS, trusting `tls.ca`, when given), writes `hello` and resolves true
 * when the first bytes of the answer satisfy `ok`; false on any error or after the timeout.
 */
export function answers(
  host: string,
  port: number,
  hello: Uint8Array | string,
  ok: (reply: Buffer) => boolean,
  tls?: { readonly ca: Buffer },
): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tls === undefined ? new Socket() : tlsConnect({ host, port, ca: tls.ca });
    const done = (result: boolean) => {
      socket.destroy();
      resolve(result);
    };
    socket.setTimeout(CHECK_TIMEOUT_MS, () => done(false));
    socket.once('error', () => done(false));
    socket.once('data', (reply) => done(ok(reply)));
    if (tls === undefined) socket.connect(port, host, () => socket.write(hello));
    else socket.once('secureConnect', () => socket.write(hello));
  });
}

/** True when a Redis at 127.0.0.1:`port` answers PING with PONG (over TLS with `tls`). */
export function redisPongs(port: number, tls?: { readonly ca: Buffer }): Promise<boolean> {
  return answers('127.0.0.1', port, 'PING\r\n', (reply) => reply.toString().startsWith('+PONG'), tls);
}

function hostAndPort(url: string, defaultPort: number): { host: string; port: number } {
  const u = new URL(url);
  return { host: u.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1', port: u.port === '' ? defaultPort : Number(u.port) };
}

async function requireServer(name: string, url: string, check: () => Promise<boolean>): Promise<boolean> {
  if (await check()) return true;
  const where = url.replace(/\/\/[^@/]*@/, '//');
  if (process.env.CI === 'true') {
    throw new Error(`${name} is not answering at ${where} and CI=true: run .ci/services.sh first`);
  }
  console.warn(
    `\n\n*** ${name.toUpperCase()} IS NOT ANSWERING at ${where}: its suites are SKIPPED. ` +
      'Run .ci/services.sh (or set LOCKQ_AMQP_URL / LOCKQ_REDIS_URL) to run them. ***\n\n',
  );
  return false;
}

/**
 * True when RabbitMQ answers the AMQP 0-9-1 handshake at {@link AMQP_URL}. When it does not:
 * throws under `CI=true` (a CI run must not pass by skipping), otherwise warns loudly and
 * returns false, for `describe.skipIf(!rabbit)`.
 */
export function requireRabbit(): Promise<boolean> {
  const { host, port } = hostAndPort(AMQP_URL, 5672);
  const protocolHeader = new Uint8Array([0x41, 0x4d, 0x51, 0x50, 0, 0, 9, 1]); // "AMQP" 0-9-1
  // A broker answers with a connection.start method frame (frame type 1).
  return requireServer('RabbitMQ', AMQP_URL, () => answers(host, port, protocolHeader, (reply) => reply[0] === 1));
}

/** True when Redis answers PING at {@link REDIS_URL}; otherwise as {@link requireRabbit}. */
export function requireRedis(): Promise<boolean> {
  const { host, port } = hostAndPort(REDIS_URL, 6379);
  const ping = new TextEncoder().encode('PING\r\n');
  // +PONG, or -NOAUTH from a server that wants a password: either way Redis is there.
  return requireServer('Redis', REDIS_URL, () => answers(host, port, ping, (reply) => reply[0] === 0x2b || reply[0] === 0x2d));
}

/**
 * True when `command` runs (`command ...versionArgs` exits 0). When it does not: throws under
 * `CI=true` (a CI run must not pass by skipping), otherwise warns loudly and returns false.
 */
export async function requireCommand(command: string, versionArgs: readonly string[], skipped: string): Promise<boolean> {
  const ok = await promisify(execFile)(command, [...versionArgs]).then(
    () => true,
    () => false,
  );
  if (ok) return true;
  if (process.env.CI === 'true') throw new Error(`${command} is not installed and CI=true: run .ci/services.sh first`);
  console.warn(`\n\n*** ${command.toUpperCase()} IS NOT INSTALLED: ${skipped} are SKIPPED. ***\n\n`);
  return false;
}

/**
 * The Kafka the suites use: bootstrap brokers as `host:port`, comma-separated (the first one is
 * probed). `kafka/start.sh` (`npm run kafka`, or `.ci/services.sh`) starts one here.
 * @defaultValue 127.0.0.1:9092
 */
export const KAFKA_BROKERS = process.env.LOCKQ_KAFKA_BROKERS ?? '127.0.0.1:9092';

/** Host and port of the first of `brokers` (`host:port`, `[v6]:port`, or a host alone for 9092). */
export function kafkaBroker(brokers: string = KAFKA_BROKERS): { host: string; port: number } {
  const first = (brokers.split(',')[0] ?? '').trim();
  const m = /^(?:\[([^\]]+)\]|([^:]*))(?::(\d+))?$/.exec(first);
  return { host: m?.[1] ?? (m?.[2] || '127.0.0.1'), port: m?.[3] === undefined ? 9092 : Number(m[3]) };
}

/**
 * A Kafka ApiVersions request, version 0 (api key 18; no body, client id "lockq"): the one request
 * every broker answers before anything else, in the same form from Kafka 0.10 to 4.x.
 */
export function kafkaApiVersionsRequest(correlationId: number): Buffer {
  const clientId = Buffer.from('lockq');
  const frame = Buffer.alloc(4 + 2 + 2 + 4 + 2 + clientId.length);
  frame.writeInt32BE(frame.length - 4, 0); // size
  frame.writeInt16BE(18, 4); // api key: ApiVersions
  frame.writeInt16BE(0, 6); // api version
  frame.writeInt32BE(correlationId, 8);
  frame.writeInt16BE(clientId.length, 12);
  clientId.copy(frame, 14);
  return frame;
}

/**
 * True when a Kafka broker answers an ApiVersions request at {@link KAFKA_BROKERS} (its
 * correlation id and error code 0: a port that merely accepts is not a broker). When it does
 * not: throws under `CI=true`, otherwise warns loudly and returns false, as {@link requireRabbit}.
 */
export async function requireKafka(): Promise<boolean> {
  const { host, port } = kafkaBroker();
  const correlationId = 0x6c71; // "lq"
  const ok = await answers(host, port, kafkaApiVersionsRequest(correlationId), (reply) => {
    // size (4) | correlation id (4) | error code (2) | ...
    return reply.length >= 10 && reply.readInt32BE(4) === correlationId && reply.readInt16BE(8) === 0;
  });
  if (ok) return true;
  if (process.env.CI === 'true') {
    throw new Error(`Kafka is not answering at ${KAFKA_BROKERS} and CI=true: run .ci/services.sh (or npm run kafka) first`);
  }
  console.warn(
    `\n\n*** KAFKA IS NOT ANSWERING at ${KAFKA_BROKERS}: its suites are SKIPPED. ` +
      'Run npm run kafka (or .ci/services.sh, or set LOCKQ_KAFKA_BROKERS) to run them. ***\n\n',
  );
  return false;
}
