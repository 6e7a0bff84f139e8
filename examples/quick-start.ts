/**
 * The README's quick start, as a program: compiled by `npm run typecheck` and run by
 * test/examples.test.ts, so the README cannot drift from the API.
 */
import { Coordinator, MemoryServerTransport } from '@lockq/coordinator';
import { LockClient } from '@lockq/worker-sdk';
import { memoryBroker } from '@lockq/worker-sdk/transport';

/** Stand-ins for the application's own resources; each refuses stale fencing tokens. */
const highest = new Map<string, number>();
const db = {
  async write(row: string, o: { fencingToken: number; signal: AbortSignal }): Promise<void> {
    o.signal.throwIfAborted();
    if (o.fencingToken < (highest.get(row) ?? 0)) throw new Error('stale token');
    highest.set(row, o.fencingToken);
  },
};
const work = async (signal: AbortSignal) => signal.throwIfAborted();
const render = async (doc: string) => doc.length;
const show = async (doc: unknown) => doc;
const row = 'invoice-42-row';
const doc = 'doc:7';

export async function main(): Promise<void> {
  const coordinator = await Coordinator.start({ transport: new MemoryServerTransport(memoryBroker()) });
  const client = await LockClient.connect('memory:', { workerId: 'billing-7' });

  // Run a routine under a lock: the lease is renewed while it runs and released after.
  await client.withLock('invoice:42', { ttlMs: 10_000 }, async ({ token, signal }) => {
    await db.write(row, { fencingToken: token, signal }); // the resource refuses lower tokens
  });

  // Claim a task only if nobody has it (null when held or when others are queued).
  const lease = await client.tryAcquire('task:913', { ttlMs: 30_000 });
  if (lease) {
    try {
      await work(lease.signal);
    } finally {
      await lease.release();
    }
  }

  // Cap concurrency: at most 8 renders at once, FIFO.
  const renders = client.semaphore('pdf-render', { limit: 8 });
  await renders.withPermit(async () => render(doc));

  // Readers together, writers alone; a reader behind a waiting writer waits (no writer starvation).
  const lock = client.rwlock(doc);
  await lock.withRead(async () => show(doc));

  await client.close(); // closes the sessions: every hold is released
  await coordinator.stop();
}
