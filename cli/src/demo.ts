import { LockClient, type Lease } from '@lockq/worker-sdk';
import { MemoryBroker } from '@lockq/protocol';
import { MemoryClientTransport } from '@lockq/worker-sdk/transport';
import type { Logger } from 'pino';
import { Coordinator } from '@lockq/coordinator';
import { MemoryServerTransport } from '@lockq/coordinator';
import { formatMs, percentile, sortedCopy } from './stats-window.js';

export interface DemoOptions {
  readonly workers: number;
  readonly locks: number;
  readonly seconds: number;
  /** Permits of the shared `render` semaphore. */
  readonly permits: number;
  readonly logger: Logger;
  readonly write: (line: string) => void;
}

export interface DemoSummary {
  readonly claims: number;
  readonly busy: number;
  readonly renders: number;
  readonly expiries: number;
  readonly staleWrites: number;
  readonly peakRenders: number;
}

/**
 * An embedded coordinator and a fleet of simulated workers on the memory transport. Each worker
 * claims a random task with a try-lock, renders it under a shared semaphore, and releases; now and
 * then one "crashes" and abandons its lease, which the coordinator expires. Every task write goes
 * through a fencing check, so a stale writer would show up in the summary.
 */
export async function runDemo(o: DemoOptions): Promise<DemoSummary> {
  o.write(
    `lockq demo: ${o.workers} simulated workers and an embedded coordinator on the in-process memory transport ` +
      `(no broker; nothing is kept after exit), for ${o.seconds}s`,
  );
  const broker = new MemoryBroker();
  const coordinator = await Coordinator.start({ transport: new MemoryServerTransport(broker), logger: o.logger });
  const clients = await Promise.all(
    Array.from({ length: o.workers }, (_, i) => {
      const workerId = `worker-${i}`;
      const transport = new MemoryClientTransport(broker, { workerId, instance: 'demo' });
      return LockClient.connect('memory:', { workerId, transport, logger: o.logger });
    }),
  );
  const highestToken = new Map<string, number>();
  let waits: number[] = [];
  let claims = 0;
  let busy = 0;
  let renders = 0;
  let rendering = 0;
  let peakRenders = 0;
  let staleWrites = 0;
  const stopAt = performance.now() + o.seconds * 1000;

  const write = (task: string, lease: Lease): void => {
    if (lease.token < (highestToken.get(task) ?? 0)) staleWrites++;
    else highestToken.set(task, lease.token);
  };

  const work = async (client: LockClient): Promise<void> => {
    const render = client.semaphore('render', { limit: o.permits });
    while (performance.now() < stopAt) {
      const task = `task:${Math.floor(Math.random() * o.locks)}`;
      const crash = Math.random() < 0.002;
      const claim = await client.tryAcquire(task, { ttlMs: crash ? 300 : 5000 });
      if (claim === null) {
        busy++;
        await new Promise((r) => setImmediate(r));
        continue;
      }
      claims++;
      if (crash) continue; // abandoned: the lease runs out and the coordinator hands the task on
      const asked = performance.now();
      const permit = await render.acquire({ ttlMs: 5000, waitMs: 10_000 });
      waits.push(performance.now() - asked);
      peakRenders = Math.max(peakRenders, ++rendering);
      await new Promise((r) => setTimeout(r, 1 + Math.random() * 3));
      write(task, claim);
      renders++;
      rendering--;
      await permit.release();
      await claim.release();
    }
  };

  const started = performance.now();
  let lastGrants = 0;
  let lastExpiries = 0;
  const ticker = setInterval(() => {
    const s = coordinator.stats;
    const counts = coordinator.counts().get(0);
    const sorted = sortedCopy(waits);
    waits = [];
    o.write(
      `t=${((performance.now() - started) / 1000).toFixed(0).padStart(3)}s  grants/s=${String(s.grants - lastGrants).padStart(6)}  ` +
        `queue=${String(counts?.waiters ?? 0).padStart(3)}  wait p50=${formatMs(percentile(sorted, 50))} ` +
        `p99=${formatMs(percentile(sorted, 99))}  expiries=${s.expiries - lastExpiries}`,
    );
    lastGrants = s.grants;
    lastExpiries = s.expiries;
  }, 1000);
  await Promise.all(clients.map(work));
  clearInterval(ticker);
  await Promise.all(clients.map((c) => c.close()));
  const summary: DemoSummary = {
    claims,
    busy,
    renders,
    expiries: coordinator.stats.expiries,
    staleWrites,
    peakRenders,
  };
  await coordinator.stop();
  o.write(
    `done: ${o.workers} workers, ${o.seconds}s — ${claims} tasks claimed (${busy} try-locks found the task busy), ` +
      `${renders} renders with at most ${peakRenders}/${o.permits} at once, ${summary.expiries} abandoned leases expired, ` +
      `${coordinator.stats.grants} grants in all, stale writes: ${staleWrites}`,
  );
  return summary;
}
