#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { runDemo } from './demo.js';

const HELP = `lockq — FIFO locks, leases and fencing tokens behind a message queue

Usage:
  lockq demo [--workers N] [--locks N] [--seconds N] [--permits N]
      Runs an embedded coordinator and a fleet of simulated workers on the in-process
      memory transport (no broker needed), printing a line per second and a summary.
        --workers   simulated workers                        (default 32)
        --locks     distinct task locks they claim            (default 100)
        --seconds   how long to run                           (default 10)
        --permits   permits of the shared "render" semaphore  (default 4)
  lockq help
      Shows this text.

Environment:
  LOCKQ_LOG_LEVEL   pino log level for the coordinator (default warn)
`;

function positive(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`--${name}: expected a positive integer, got ${value}`);
  return n;
}

async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
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
      const logger = pino({ level: process.env.LOCKQ_LOG_LEVEL ?? 'warn' }, pino.destination({ fd: 2, sync: true }));
      const summary = await runDemo({
        workers: positive('workers', values.workers, 32),
        locks: positive('locks', values.locks, 100),
        seconds: positive('seconds', values.seconds, 10),
        permits: positive('permits', values.permits, 4),
        logger,
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

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`lockq: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 2;
  },
);
