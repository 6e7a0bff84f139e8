import { Coordinator, MemoryServerTransport } from '@lockq/coordinator';
import { LockClient } from '@lockq/worker-sdk';
import { decodeReply, decodeRequest, encodeReply } from '@lockq/protocol';
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

/**
 * The ceiling the codec alone sets on the same cycle: the four messages of an acquire+release
 * (two requests, two replies), each encoded and decoded exactly as the SDK and the coordinator
 * do, with nothing else. Reported beside the end-to-end figure so the two are comparable.
 */
export function codecCycles(seconds: number): number {
  const envelope =
    '{"v":1,"worker":"bench-worker-17","session":"bench-worker-17.a1b2c3d4.0","replyTo":"lockq.replies.bench-worker-17.a1b2c3d4","id":"';
  const request = (seq: number, fields: object) =>
    Buffer.from(`${envelope}a1b2c3d4-${seq.toString(36)}","seq":${seq},"settled":${seq - 1},${JSON.stringify(fields).slice(1)}`);
  let cycles = 0;
  let seq = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  while (performance.now() < end) {
    for (let i = 0; i < 1000; i++) {
      const acquire = decodeRequest(request(++seq, { op: 'acquire', lock: 'bench:17', ttlMs: 10_000, waitMs: 30_000 }), 4096);
      const re1 = acquire.ok ? acquire.request.id : '';
      decodeReply(encodeReply({ type: 'granted', re: re1, lock: 'bench:17', token: seq, ttlMs: 10_000, basis: re1 }, 1, 0));
      const release = decodeRequest(request(++seq, { op: 'release', lock: 'bench:17', token: seq }), 4096);
      const re2 = release.ok ? release.request.id : '';
      decodeReply(encodeReply({ type: 'released', re: re2, lock: 'bench:17', token: seq }, 1, 0));
      cycles++;
    }
  }
  return cycles / ((performance.now() - start) / 1000);
}
