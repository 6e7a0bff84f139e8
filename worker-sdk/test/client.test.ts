/** The client's own life cycle, against a scripted coordinator on the memory broker. */
import { afterEach, describe, expect, it } from 'vitest';
import { LockClient } from '../src/client.js';
import { MemoryBroker } from '@lockq/protocol';
import { RecordingTransport, ScriptedCoordinator } from './support/scripted-coordinator.js';

const clients: LockClient[] = [];

async function connected(): Promise<{ client: LockClient; coordinator: ScriptedCoordinator }> {
  const broker = new MemoryBroker();
  const coordinator = new ScriptedCoordinator(broker);
  let token = 0;
  coordinator.onAcquire = (req) =>
    coordinator.reply(req.replyTo, { type: 'granted', re: req.id, lock: req.lock, token: ++token, ttlMs: req.ttlMs, basis: req.id });
  const transport = new RecordingTransport(broker, { workerId: 'w', instance: 'i' });
  const client = await LockClient.connect('memory:', { workerId: 'w', transport, requestTimeoutMs: 2000 });
  clients.push(client);
  return { client, coordinator };
}

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

describe('close', () => {
  it('is idempotent under concurrent calls: the session is closed once, and every call resolves once it is closed', async () => {
    const { client, coordinator } = await connected();
    await (await client.acquire('L', { ttlMs: 10_000 })).release(); // opens the session
    const first = client.close();
    const second = client.close();
    await second;
    await expect(client.acquire('L')).rejects.toMatchObject({ code: 'CLIENT_CLOSED' });
    await first;
    await client.close();
    expect(coordinator.sent('close')).toHaveLength(1);
  });
});

describe('connect', () => {
  it('a transport that fails to open is closed again, and connect rejects with its error', async () => {
    const broker = new MemoryBroker();
    const transport = new RecordingTransport(broker, { workerId: 'w', instance: 'i' });
    let closed = 0;
    transport.open = () => Promise.reject(new Error('broker unreachable'));
    const close = transport.close.bind(transport);
    transport.close = () => {
      closed++;
      return close();
    };
    await expect(LockClient.connect('memory:', { workerId: 'w', transport })).rejects.toThrow('broker unreachable');
    expect(closed).toBe(1);
  });
});

describe('answers', () => {
  it('a grant of another lock under a waiting acquire’s id is dropped, and the real grant still counts', async () => {
    const broker = new MemoryBroker();
    const coordinator = new ScriptedCoordinator(broker);
    const transport = new RecordingTransport(broker, { workerId: 'w', instance: 'i' });
    const client = await LockClient.connect('memory:', { workerId: 'w', transport, requestTimeoutMs: 2000 });
    clients.push(client);
    coordinator.onAcquire = (req) => {
      // A forger that read the request id answers first, for a lock the worker did not ask for.
      coordinator.reply(req.replyTo, { type: 'granted', re: req.id, lock: 'other', token: 2 ** 53 - 1, ttlMs: req.ttlMs, basis: req.id });
      coordinator.reply(req.replyTo, { type: 'granted', re: req.id, lock: req.lock, token: 7, ttlMs: req.ttlMs, basis: req.id });
    };
    const lease = await client.acquire('mine', { ttlMs: 10_000 });
    expect(lease).toMatchObject({ lock: 'mine', token: 7 });
    expect(client.droppedReplies.mismatch).toBe(1);
  });
});
