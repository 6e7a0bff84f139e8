import { Coordinator, MemoryServerTransport } from '@lockq/coordinator';
import { LockClient } from '@lockq/worker-sdk';
import { MemoryBroker, MemoryClientTransport } from '@lockq/worker-sdk/transport';

/**
 * Acquire+release cycles per second end to end over the memory transport: `workers` clients,
 * each on its own lock, through the codec, the runtime and the SDK exactly as in production.
 */
export async function memoryCycles(workers: number, seconds: number): Promise<number> {
  const broker = new MemoryBroker();
  const coordinator = await Coordinator.start({ transport: new MemoryServerTransport(broker) });
  const clients = await Promise.all(
    Array.from({ length: workers }, (_, i) =>
      LockClient.connect('memory:', { workerId: `b${i}`, transport: new MemoryClientTransport(broker, { workerId: `b${i}`, instance: 'x' }) }),
    ),
  );
  // Warm up: open sessions and let the JIT settle.
  await Promise.all(clients.map(async (c, i) => (await c.acquire(`bench:${i}`)).release()));
  let cycles = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  await Promise.all(
    clients.map(async (c, i) => {
      const name = `bench:${i}`;
      while (performance.now() < end) {
        const lease = await c.acquire(name, { ttlMs: 10_000 });
        await lease.release();
        cycles++;
      }
    }),
  );
  const elapsed = (performance.now() - start) / 1000;
  await Promise.all(clients.map((c) => c.close()));
  await coordinator.stop();
  return cycles / elapsed;
}
