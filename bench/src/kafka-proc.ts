import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * What a broker process costs, read from Linux's /proc: resident memory and CPU time. The Kafka
 * suites report it beside their figures (the broker's side of a layout or a workload); on a
 * machine without /proc, or a broker that is not a local process, the figures are left out.
 */

/** Linux's USER_HZ: the unit of /proc/<pid>/stat's CPU times (100 on every mainstream architecture). */
const CLOCK_TICKS_PER_SECOND = 100;

/** One reading of a process. */
export interface ProcessSample {
  /** VmRSS, bytes. */
  readonly rssBytes: number;
  /** User + system CPU time since the process started, seconds. */
  readonly cpuSeconds: number;
  /** Open file descriptors (files and sockets); NaN when /proc/<pid>/fd cannot be listed (another user's process). */
  readonly fds: number;
  /** When it was read (performance.now()). */
  readonly at: number;
}

/** A broker process found on this machine. */
export interface BrokerProcess {
  readonly pid: number;
  readonly name: string;
  /** Null once the process is gone (or /proc cannot be read). */
  sample(): ProcessSample | null;
}

function cmdline(pid: number): string | null {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return null;
  }
}

function openFiles(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return Number.NaN;
  }
}

/** Reads `pid` from /proc, or null when it is gone. */
export function sampleProcess(pid: number): ProcessSample | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces and parentheses): state is field 3,
    // utime and stime fields 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    const rss = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return { rssBytes: Number(rss?.[1] ?? Number.NaN) * 1024, cpuSeconds: ticks / CLOCK_TICKS_PER_SECOND, fds: openFiles(pid), at: performance.now() };
  } catch {
    return null;
  }
}

/** The first process whose command line matches `pattern`, preferring `hint` (a pid file's). */
function findProcess(pattern: RegExp, hint: number | undefined): number | undefined {
  if (hint !== undefined && pattern.test(cmdline(hint) ?? '')) return hint;
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return undefined;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    const pid = Number(e);
    if (pid !== process.pid && pattern.test(cmdline(pid) ?? '')) return pid;
  }
  return undefined;
}

function pidFile(path: string): number | undefined {
  try {
    const pid = Number(readFileSync(path, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function broker(name: string, pid: number | undefined): BrokerProcess | undefined {
  return pid === undefined ? undefined : { pid, name, sample: () => sampleProcess(pid) };
}

/**
 * The local Kafka broker: `LOCKQ_BENCH_KAFKA_PID`, else the one kafka/start.sh recorded
 * (`$LOCKQ_KAFKA_DIR/kafka.pid`), else the first `kafka.Kafka` JVM in /proc.
 */
export function kafkaBroker(): BrokerProcess | undefined {
  const given = process.env.LOCKQ_BENCH_KAFKA_PID === undefined ? undefined : Number(process.env.LOCKQ_BENCH_KAFKA_PID);
  const recorded = pidFile(join(process.env.LOCKQ_KAFKA_DIR ?? '/tmp/lockq-kafka', 'kafka.pid'));
  return broker('Kafka', findProcess(/\bkafka\.Kafka\b/, given ?? recorded));
}

/** The local RabbitMQ node: `LOCKQ_BENCH_RABBITMQ_PID`, else the first Erlang VM running `rabbit`. */
export function rabbitBroker(): BrokerProcess | undefined {
  const given = process.env.LOCKQ_BENCH_RABBITMQ_PID === undefined ? undefined : Number(process.env.LOCKQ_BENCH_RABBITMQ_PID);
  return broker('RabbitMQ', findProcess(/beam\.smp.*\brabbit\b/, given));
}

/** CPU seconds the process used per wall-clock second between two samples (1 = one core busy). */
export function cpuShare(before: ProcessSample | null, after: ProcessSample | null): number {
  if (before === null || after === null || after.at <= before.at) return Number.NaN;
  return (after.cpuSeconds - before.cpuSeconds) / ((after.at - before.at) / 1000);
}

/**
 * Samples a process every `everyMs` until stopped: the largest RSS seen (VmHWM cannot be reset,
 * so a peak over one phase needs sampling) and the first and last readings.
 */
export function watchProcess(proc: BrokerProcess | undefined, everyMs = 250): { stop(): { first: ProcessSample | null; last: ProcessSample | null; peakRssBytes: number } } {
  const first = proc?.sample() ?? null;
  let peak = first?.rssBytes ?? Number.NaN;
  const timer = setInterval(() => {
    const s = proc?.sample();
    if (s != null && !(s.rssBytes <= peak)) peak = s.rssBytes;
  }, everyMs);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
      const last = proc?.sample() ?? null;
      if (last !== null && !(last.rssBytes <= peak)) peak = last.rssBytes;
      return { first, last, peakRssBytes: peak };
    },
  };
}
