import { createRequire } from 'node:module';

/**
 * kafkajs 2.2.4 keeps every connection's request queue polling itself on a 1 ms timer once it
 * has sent a request, busy or idle (tulios/kafkajs#1556, #1704; fixes proposed in #1667 and
 * #1755, none released): measured here, about 20 ms of CPU per second for each idle lockq
 * worker process on Kafka, 60 times what an idle RabbitMQ worker process costs. 64 worker
 * processes on a 2-core machine then spend over a core on it.
 *
 * The kafka suite measures lockq as shipped: without the fix unless `LOCKQ_BENCH_KAFKAJS_IDLE_FIX=1`.
 * The kafka-replies suite measures reply layouts with a thousand raw consumers, which the 1 ms
 * timers alone would starve on a small machine: with the fix unless `LOCKQ_BENCH_KAFKAJS_IDLE_FIX=0`.
 * The fix is #1667's, applied to kafkajs's RequestQueue in each bench process that asks (worker
 * processes inherit the setting): no timer while nothing is pending and the queue is not
 * throttled (a request that arrives later is sent at once, or schedules its own check). It shows
 * what the fix would buy; it is not part of lockq.
 */

/** The environment variable: '1' on, '0' off, unset: the suite's default. */
export const KAFKAJS_IDLE_FIX_ENV = 'LOCKQ_BENCH_KAFKAJS_IDLE_FIX';

/** Whether the fix is wanted: as the environment says, else `byDefault`. */
export function kafkajsIdleFixWanted(byDefault: boolean): boolean {
  const v = process.env[KAFKAJS_IDLE_FIX_ENV];
  return v === undefined || v === '' ? byDefault : v === '1';
}

interface RequestQueuePrototype {
  pending: unknown[];
  throttledUntil: number;
  scheduleCheckPendingRequests(this: RequestQueuePrototype): void;
}

let applied = false;

/**
 * Applies the fix when wanted (see {@link kafkajsIdleFixWanted}), once per process (it stays for
 * the rest of the process); returns whether it is in effect. Processes started from here get
 * {@link idleFixEnvironment} to do the same.
 */
export function applyKafkajsIdleFix(byDefault: boolean): boolean {
  if (!kafkajsIdleFixWanted(byDefault) || applied) return applied;
  const RequestQueue = createRequire(import.meta.url)('kafkajs/src/network/requestQueue/index.js') as { prototype: RequestQueuePrototype };
  const original = RequestQueue.prototype.scheduleCheckPendingRequests;
  RequestQueue.prototype.scheduleCheckPendingRequests = function (this: RequestQueuePrototype) {
    if (this.pending.length === 0 && !(this.throttledUntil > Date.now())) return;
    original.call(this);
  };
  applied = true;
  return true;
}

/** The environment for a child process: this process's, with the fix on or off as it is here. */
export function idleFixEnvironment(): NodeJS.ProcessEnv {
  return { ...process.env, [KAFKAJS_IDLE_FIX_ENV]: applied ? '1' : '0' };
}
