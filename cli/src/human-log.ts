import { type Logger, pino } from 'pino';

/**
 * A pino logger for the commands people run in a terminal (`demo`), printing plain lines such as
 * `lockq: warn: state store is not durable … (component=coordinator)` instead of JSON; the
 * service (`lockq coordinator`) keeps pino's JSON for log collectors.
 *
 * Built from pino's own options, not pino-pretty: these commands log a few lines at warn and
 * above, so a destination that reads back each (small) line is all that is needed, and the CLI
 * gains no dependency and no worker thread.
 */
export function humanLogger(level: string, write: (text: string) => void = (text) => process.stderr.write(text)): Logger {
  return pino(
    {
      level,
      base: null, // no pid or hostname: the reader is at this machine
      timestamp: false,
      formatters: { level: (label) => ({ level: label }) },
    },
    { write: (line: string) => write(humanLine(line)) },
  );
}

/** One pino JSON line as text: `lockq: <level>: <msg>[: <error>] (key=value, …)`. */
export function humanLine(json: string): string {
  const { level, msg, err, ...rest } = JSON.parse(json) as { level?: unknown; msg?: unknown; err?: { message?: unknown } };
  let text = `lockq: ${String(level)}: ${typeof msg === 'string' ? msg : ''}`;
  if (err !== undefined) text += `: ${typeof err?.message === 'string' ? err.message : JSON.stringify(err)}`;
  const fields = Object.entries(rest).map(([key, value]) => `${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`);
  if (fields.length > 0) text += ` (${fields.join(', ')})`;
  return `${text}\n`;
}
