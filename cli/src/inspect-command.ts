import type { LockView } from '@lockq/protocol';
import type { LocksResponse } from '@lockq/coordinator';
import { UsageError } from './settings.js';
import { formatLock, formatLocks } from './table.js';

export const DEFAULT_ADMIN_URL = 'http://127.0.0.1:9464';

export interface InspectOptions {
  /** Base URL of a coordinator's admin listener. */
  readonly admin: string;
  /** A lock name, or undefined for every lock. */
  readonly lock: string | undefined;
  readonly json: boolean;
  readonly timeoutMs: number;
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
}

/**
 * `lockq inspect`: reads `/v1/locks` or `/v1/locks/:name` from a running coordinator. Returns the
 * exit code: 0 shown, 1 unreachable, not found or refused.
 */
export async function runInspect(o: InspectOptions): Promise<number> {
  let base: URL;
  try {
    base = new URL(o.admin);
  } catch {
    throw new UsageError(`--admin: not a URL: ${JSON.stringify(o.admin)}`);
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') {
    throw new UsageError(`--admin: expected an http:// URL, got ${JSON.stringify(o.admin)}`);
  }
  const path = o.lock === undefined ? '/v1/locks' : `/v1/locks/${encodeURIComponent(o.lock)}`;
  const url = new URL(path, base);
  let res: Response;
  let text: string;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(o.timeoutMs), headers: { accept: 'application/json' } });
    text = await res.text();
  } catch (err) {
    o.err(`lockq: cannot reach the coordinator's admin listener at ${base.origin}: ${reason(err)}\n`);
    return 1;
  }
  if (res.status === 404 && o.lock !== undefined) {
    o.err(`lockq: lock ${JSON.stringify(o.lock)} has no holder or waiter on this coordinator\n`);
    return 1;
  }
  if (!res.ok) {
    o.err(`lockq: ${url.href} answered ${res.status} ${res.statusText}: ${text.slice(0, 200)}\n`);
    return 1;
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    o.err(`lockq: ${url.href} did not answer JSON; is ${base.origin} a lockq admin listener?\n`);
    return 1;
  }
  if (o.json) {
    o.out(`${JSON.stringify(body, null, 2)}\n`);
    return 0;
  }
  const lines = o.lock === undefined ? formatLocks(body as LocksResponse) : formatLock(body as LockView);
  o.out(`${lines.join('\n')}\n`);
  return 0;
}

/** fetch hides the useful part (ECONNREFUSED, ENOTFOUND, timeout) in `cause`. */
function reason(err: unknown): string {
  if (err instanceof Error && err.name === 'TimeoutError') return 'no answer in time';
  const cause = err instanceof Error ? err.cause : undefined;
  if (cause instanceof Error) return cause.message;
  return err instanceof Error ? err.message : String(err);
}
