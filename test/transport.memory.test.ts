import { MemoryBroker, MemoryClientTransport } from '@lockq/worker-sdk/transport';
import { describe, expect, it } from 'vitest';
import { MemoryServerTransport } from '../coordinator/src/transport/index.js';
import { defineTransportContract } from './transport-contract.js';

defineTransportContract('memory', () => {
  const broker = new MemoryBroker();
  return {
    prefix: 'lockq',
    principal: 'local',
    client: (workerId) => new MemoryClientTransport(broker, { workerId, instance: 'i' }),
    server: () => new MemoryServerTransport(broker),
    deadLetters: async () => broker.deadLetters.map(({ body, code }) => ({ body, code })),
    cleanup: async () => {},
  };
});

describe('memory client identity', () => {
  const broker = new MemoryBroker();
  const client = (o: { principal?: string; workerId?: string; instance?: string; prefix?: string }) =>
    new MemoryClientTransport(broker, { workerId: 'w', instance: 'i', ...o });

  it('sends as its principal, replies in that principal’s namespace', async () => {
    const c = client({ principal: 'billing', prefix: 'p' });
    expect(c.replyAddress).toBe('p.replies.billing.w.i');
    const principals: (string | undefined)[] = [];
    broker.consumeRequests(0, async (_batch, p) => void principals.push(...p));
    await c.open({ onReply: () => {} });
    await c.send(0, new Uint8Array([1]));
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    expect(principals).toEqual(['billing']);
  });

  it('refuses a principal outside [A-Za-z0-9_-]{1,64}, naming it', () => {
    for (const bad of ['', 'a.b', 'a b', 'ü', 'x'.repeat(65)]) {
      expect(() => client({ principal: bad }), bad).toThrow(/^principal: .* is not a principal: 1 to 64 of A-Z a-z 0-9 _ -/);
    }
  });

  it('refuses a reply address over 255 bytes, saying which part to shorten', () => {
    expect(() => client({ workerId: 'w'.repeat(200), prefix: 'p'.repeat(50) })).toThrow(
      /^workerId: the reply address .* would be 267 bytes, over the 255 .*\(prefix 50, workerId 200, instance 1, principal 5 bytes\): shorten workerId$/,
    );
    expect(() => client({ workerId: 'w', prefix: 'p'.repeat(64), instance: 'i'.repeat(190) })).toThrow(/^instance: .* shorten instance$/);
    // The longest: prefix 64, principal 64, an 8-character instance (the SDK's) and a worker id of 108.
    const longest = client({ prefix: 'p'.repeat(64), principal: 'q'.repeat(64), workerId: 'w'.repeat(108), instance: 'i'.repeat(8) });
    expect(longest.replyAddress).toHaveLength(255);
    expect(() => client({ prefix: 'p'.repeat(64), principal: 'q'.repeat(64), workerId: 'w'.repeat(109), instance: 'i'.repeat(8) })).toThrow(
      /would be 256 bytes.*shorten workerId$/,
    );
  });
});
