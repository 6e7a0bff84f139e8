import type { Logger } from 'pino';

/** How much of the driver's own logging to keep, by kafkajs's level names. */
export type KafkaDriverLogLevel = 'nothing' | 'error' | 'warn' | 'info' | 'debug';

/** kafkajs's numeric levels (its `logLevel` enum), by name. */
export const KAFKA_DRIVER_LOG_LEVELS: Readonly<Record<KafkaDriverLogLevel, number>> = Object.freeze({
  nothing: 0,
  error: 1,
  warn: 2,
  info: 4,
  debug: 5,
});

/** One kafkajs log entry, as its `logCreator` hands it over. */
export interface KafkaDriverLogEntry {
  readonly namespace: string;
  readonly level: number;
  readonly label: string;
  readonly log: { readonly message: string; readonly timestamp?: string; readonly [key: string]: unknown };
}

/** A kafkajs `logCreator`: given the driver's level, returns the function that writes each entry. */
export type KafkaLogCreator = (level: number) => (entry: KafkaDriverLogEntry) => void;

/**
 * Routes kafkajs's log entries into `logger` (a child with `driver: 'kafkajs'`), each at the
 * pino level of the same name, so the driver never writes to the console itself. Without a
 * logger every entry is dropped.
 */
export function kafkaLogCreator(logger: Logger | undefined): KafkaLogCreator {
  const log = logger?.child({ driver: 'kafkajs' });
  return () => (entry) => {
    if (log === undefined) return;
    const { message, timestamp: _timestamp, ...fields } = entry.log;
    // kafkajs logs every error answer of the broker as an error ("Response Heartbeat…"), though
    // the caller handles it (a rebalance in progress, a transaction still completing): debug.
    const answered = entry.namespace === 'Connection' && message.startsWith('Response ');
    const at = answered ? 'debug' : entry.level <= 1 ? 'error' : entry.level === 2 ? 'warn' : entry.level === 4 ? 'info' : 'debug';
    if (!log.isLevelEnabled(at)) return;
    log[at]({ namespace: entry.namespace, ...fields }, message);
  };
}
