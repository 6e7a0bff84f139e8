#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { DEFAULT_ADMIN_HOST, DEFAULT_ADMIN_PORT } from '@lockq/coordinator';
import { runCoordinatorCommand } from './coordinator-command.js';
import { runDemo } from './demo.js';
import { DEFAULT_ADMIN_URL, runInspect } from './inspect-command.js';
import { humanLogger } from './human-log.js';
import { runSetupBroker } from './setup-broker-command.js';
import { setupBrokerSettings } from './setup-broker-plan.js';
import { COORDINATOR_ENV, coordinatorSettings, LOG_LEVELS, parseInteger, UsageError } from './settings.js';

const HELP = `lockq — FIFO locks, leases and fencing tokens behind a message queue

Usage:
  lockq coordinator --transport URL [options]
      Runs a coordinator for the partitions it owns, with an HTTP admin listener
      (/healthz, /readyz, /metrics, /v1/locks, /v1/locks/NAME). Logs JSON to stdout.
      SIGTERM or SIGINT drains: consuming stops, the batch in progress is decided and
      answered, then it exits 0; a second signal exits 1 at once.
        --transport URL    broker: amqp://user:pass@host:5672/vhost, amqps://…,
                           kafka://host:9092[,host2:9092][?options] or kafkas://… (needs --identity off:
                           Kafka cannot vouch for senders; docs/kafka.md), or
                           memory: (in-process; only workers in this process can reach it)
                                                     env ${COORDINATOR_ENV.transport} (required)
        --partitions N     partitions in the deployment; workers must use the same N
                                                     env ${COORDINATOR_ENV.partitions} (default 1)
        --own LIST         partitions this process consumes, e.g. 0,2,5
                                                     env ${COORDINATOR_ENV.own} (default all)
        --admin-host H     admin listener interface  env ${COORDINATOR_ENV['admin-host']} (default ${DEFAULT_ADMIN_HOST})
        --admin-port P     admin listener port; 0 picks a free one
                                                     env ${COORDINATOR_ENV['admin-port']} (default ${DEFAULT_ADMIN_PORT})
        --prefix P         prefix of every queue and exchange name
                                                     env ${COORDINATOR_ENV.prefix} (default lockq)
        --prefetch N       requests the broker may deliver ahead of acks
                                                     env ${COORDINATOR_ENV.prefetch} (default 256 on RabbitMQ;
                                                     also the largest batch)
        --max-queue-length N
                           requests a partition's queue holds before the broker
                           refuses more (workers get a retriable TRANSPORT_ERROR);
                           RabbitMQ x-max-length, reject-publish
                                                     env ${COORDINATOR_ENV['max-queue-length']} (default unbounded)
        --dead-letter-max-length N
                           poison messages kept; the oldest are dropped, and each
                           keeps only its first 1024 bytes
                                                     env ${COORDINATOR_ENV['dead-letter-max-length']} (default 10000)
      Changing either on a running deployment changes a queue's arguments, which the
      broker refuses (406): see docs/protocol.md §16.2.
        --log-level L      fatal, error, warn, info, debug, trace or silent
                                                     env ${COORDINATOR_ENV['log-level']} (default info)
        --store URL        durable state store: redis://[user:pass@]host:6379[/db] or
                           rediss://…, keys start with the prefix; or kafka: (with a
                           kafka:// transport) for the topic <prefix>.changelog
                                                     env ${COORDINATOR_ENV.store} (default: none;
                                                     holds and queues live only in this process;
                                                     tokens and epochs still rise, from the clock)
        --secret-file PATH file with the key of the hand-off proofs (at least 16 bytes;
                           give every coordinator of a deployment the same one)
                                                     env ${COORDINATOR_ENV['secret-file']} (default: a random
                                                     key per process; see docs/security.md §6.1)
        --tls-ca PATH      PEM CA file that verifies an amqps:// or kafkas:// broker and a
                           rediss:// store (instead of Node's CAs; no NODE_EXTRA_CA_CERTS)
                                                     env ${COORDINATOR_ENV['tls-ca']} (default: Node's CAs)
        --tls-cert PATH    PEM client certificate for servers that require one;
        --tls-key PATH     and its unencrypted key (both or neither)
                                                     env ${COORDINATOR_ENV['tls-cert']}, ${COORDINATOR_ENV['tls-key']}
        --identity MODE    required: every request must carry the broker-validated
                           user_id of its sender, and want answers only in that user's
                           reply namespace (else dead-lettered FORBIDDEN); off: everyone
                           who can publish is one principal (docs/security.md §5)
                                                     env ${COORDINATOR_ENV.identity} (default required)
        --principal-rate N requests a second one principal may send to one partition
                           (burst 2N); beyond it they are dropped unread, answered
                           RATE_LIMITED at most every 100 ms
                                                     env ${COORDINATOR_ENV['principal-rate']} (default: no limit)
      Flags win over environment variables.

  lockq inspect [NAME] [--admin URL] [--json]
      Shows holders (worker, token, lease left, mode, permits) and waiters (position,
      worker, wait left) of every lock, or of lock NAME, from a running coordinator.
      Exits 1 when the coordinator cannot be reached or NAME is neither held nor awaited.
        --admin URL        the coordinator's admin listener
                                                     env LOCKQ_ADMIN_URL (default ${DEFAULT_ADMIN_URL})
        --json             print the raw JSON instead of tables

  lockq demo [--workers N] [--locks N] [--seconds N] [--permits N]
      Runs an embedded coordinator and a fleet of simulated workers on the in-process
      memory transport (no broker needed), printing a line per second and a summary.
        --workers   simulated workers                        (default 32)
        --locks     distinct task locks they claim            (default 100)
        --seconds   how long to run                           (default 10)
        --permits   permits of the shared "render" semaphore  (default 4)
      Logs go to stderr as plain lines, at env ${COORDINATOR_ENV['log-level']} (default warn).

  lockq setup-broker --coordinator NAME [--worker NAME ...] [options]
      Creates on RabbitMQ, with one rabbitmqctl import_definitions (no management plugin
      needed): the vhost, a user per name with a generated password and no tags, the
      permissions of docs/security.md §5.4 (workers publish requests but cannot consume
      them or touch other workers' reply queues), and the durable exchanges <prefix>.requests,
      <prefix>.forwards and <prefix>.dead-letter. Prints each new user's amqp:// URL once.
      A user that exists keeps its password; guest is never touched.
        --coordinator NAME a coordinator user (repeatable, at least one)
        --worker NAME      a worker user, its name the principal (repeatable)
        --vhost V          the vhost                                (default /)
        --prefix P         prefix of every queue and exchange name  (default lockq)
        --password-file F  write "user password" lines to new file F (mode 0600)
                           instead of printing URLs
        --reset-passwords  give users that exist a new password (and no tags) too
        --dry-run          print what would be done; change nothing
        --rabbitmqctl CMD  how to run rabbitmqctl                   (default rabbitmqctl;
                           e.g. "docker exec -i rabbit rabbitmqctl")
        --host H           host[:port] in the printed URLs          (default localhost)

  lockq help
      Shows this text.

Exit codes: 0 success, 1 failure, 2 usage error.
`;


async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'coordinator': {
      const { values } = parseArgs({
        args: [...rest],
        options: {
          transport: { type: 'string' },
          store: { type: 'string' },
          partitions: { type: 'string' },
          own: { type: 'string' },
          'admin-host': { type: 'string' },
          'admin-port': { type: 'string' },
          prefix: { type: 'string' },
          prefetch: { type: 'string' },
          'max-queue-length': { type: 'string' },
          'dead-letter-max-length': { type: 'string' },
          'log-level': { type: 'string' },
          'secret-file': { type: 'string' },
          'tls-ca': { type: 'string' },
          'tls-cert': { type: 'string' },
          'tls-key': { type: 'string' },
          identity: { type: 'string' },
          'principal-rate': { type: 'string' },
        },
        strict: true,
      });
      const settings = coordinatorSettings(values, process.env);
      // Synchronous writes: a handful of lines over the process's life (never one per message at
      // info), and none is lost when the process exits right after the last one.
      const logger = pino({ name: 'lockq', level: settings.logLevel }, pino.destination({ fd: 1, sync: true }));
      // Node's own behaviour (exit 1), but with the error in the structured log: after a failure
      // nobody handled, the state is unknown, and the broker redelivers what was not acknowledged.
      const fatal = (err: unknown) => {
        logger.fatal({ err }, 'unhandled error; exiting');
        process.exit(1);
      };
      process.on('uncaughtException', fatal);
      process.on('unhandledRejection', fatal);
      const stopRequested = new Promise<string>((resolve) => {
        let signalled = false;
        const onSignal = (signal: NodeJS.Signals) => {
          if (signalled) {
            logger.warn({ signal }, 'second signal: exiting without finishing the drain');
            process.exit(1);
          }
          signalled = true;
          resolve(signal);
        };
        process.on('SIGTERM', onSignal);
        process.on('SIGINT', onSignal);
      });
      // Broker sockets or retry timers left by a failed start must not keep the process alive.
      return exit(await runCoordinatorCommand({ settings, logger, stopRequested }));
    }
    case 'inspect': {
      const { values, positionals } = parseArgs({
        args: [...rest],
        options: { admin: { type: 'string' }, json: { type: 'boolean', default: false } },
        allowPositionals: true,
        strict: true,
      });
      if (positionals.length > 1) throw new UsageError('inspect takes at most one lock name');
      const fromEnv = process.env.LOCKQ_ADMIN_URL;
      return runInspect({
        admin: values.admin ?? (fromEnv === undefined || fromEnv === '' ? DEFAULT_ADMIN_URL : fromEnv),
        lock: positionals[0],
        json: values.json,
        timeoutMs: 5000,
        out: (text) => process.stdout.write(text),
        err: (text) => process.stderr.write(text),
      });
    }
    case 'setup-broker': {
      const { values } = parseArgs({
        args: [...rest],
        options: {
          vhost: { type: 'string' },
          prefix: { type: 'string' },
          coordinator: { type: 'string', multiple: true },
          worker: { type: 'string', multiple: true },
          'password-file': { type: 'string' },
          'reset-passwords': { type: 'boolean', default: false },
          'dry-run': { type: 'boolean', default: false },
          rabbitmqctl: { type: 'string' },
          host: { type: 'string' },
        },
        strict: true,
      });
      return runSetupBroker(setupBrokerSettings(values), {
        out: (text) => process.stdout.write(text),
        err: (text) => process.stderr.write(text),
      });
    }
    case 'demo': {
      const { values } = parseArgs({
        args: [...rest],
        options: {
          workers: { type: 'string' },
          locks: { type: 'string' },
          seconds: { type: 'string' },
          permits: { type: 'string' },
        },
        strict: true,
      });
      const logLevel = process.env.LOCKQ_LOG_LEVEL || 'warn';
      if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
        throw new UsageError(`LOCKQ_LOG_LEVEL: expected one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(logLevel)}`);
      }
      const summary = await runDemo({
        workers: parseInteger('--workers', values.workers, 32, 1, Number.MAX_SAFE_INTEGER),
        locks: parseInteger('--locks', values.locks, 100, 1, Number.MAX_SAFE_INTEGER),
        seconds: parseInteger('--seconds', values.seconds, 10, 1, Number.MAX_SAFE_INTEGER),
        permits: parseInteger('--permits', values.permits, 4, 1, Number.MAX_SAFE_INTEGER),
        logger: humanLogger(logLevel),
        write: (line) => process.stdout.write(`${line}\n`),
      });
      return summary.staleWrites === 0 ? 0 : 1;
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(HELP);
      return 0;
    default:
      process.stderr.write(`lockq: unknown command ${JSON.stringify(command)}\n\n${HELP}`);
      return 2;
  }
}

function exit(code: number): never {
  process.exit(code);
}

/** parseArgs reports unknown or malformed options as TypeErrors with an ERR_PARSE_ARGS_* code. */
function isUsageError(err: unknown): boolean {
  if (err instanceof UsageError) return true;
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_');
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const message = err instanceof Error ? err.message : String(err);
    if (isUsageError(err)) {
      process.stderr.write(`lockq: ${message}\nRun "lockq help" for usage.\n`);
      process.exitCode = 2;
    } else {
      process.stderr.write(`lockq: ${message}\n`);
      process.exitCode = 1;
    }
  },
);
