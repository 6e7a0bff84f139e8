/** The in-process delivery of forwards between client transports of one process. */
import { describe, expect, it } from 'vitest';
import { MemoryBroker } from '@lockq/protocol';
import { LocalHandOffTransport } from '../src/transport/local-hand-off.js';
import { elapse, waitFor } from '../../test/support/wait-for.js';
import { RecordingTransport } from './support/scripted-coordinator.js';

async function opened(broker: MemoryBroker, workerId: string, shortcut: boolean) {
  const inner = new RecordingTransport(broker, { workerId, instance: 'i' });
  const transport = new LocalHandOffTransport(inner, { shortcut });
  const received: string[] = [];
  await transport.open({ onReply: (body) => received.push(Buffer.from(body).toString()) });
  return { inner, transport, received };
}

const bytes = (s: string) => Buffer.from(s);

describe('LocalHandOffTransport', () => {
  it('delivers a forward to a transport open in this process to its reply handler, without the broker', async () => {
    const broker = new MemoryBroker();
    const a = await opened(broker, 'a', true);
    const b = await opened(broker, 'b', false); // reachable even though it does not take the shortcut itself
    expect(b.transport.replyAddress).toBe(b.inner.replyAddress);
    await a.transport.forward(b.transport.replyAddress, bytes('grant'));
    await waitFor(() => b.received.length > 0, 'the forwarded message');
    expect(b.received).toEqual(['grant']);
    expect(a.inner.forwards()).toEqual([]);
    await Promise.all([a.transport.close(), b.transport.close()]);
  });

  it('goes through the broker without the shortcut, to an address not open here, and once the addressee closed', async () => {
    const broker = new MemoryBroker();
    const a = await opened(broker, 'a', false);
    const b = await opened(broker, 'b', true);
    const elsewhere: string[] = [];
    broker.subscribeReplies('elsewhere', (body) => elsewhere.push(Buffer.from(body).toString()));

    await a.transport.forward(b.transport.replyAddress, bytes('1'));
    await b.transport.forward('elsewhere', bytes('2'));
    await b.transport.close();
    const c = await opened(broker, 'c', true);
    await c.transport.forward(b.transport.replyAddress, bytes('3'));
    await waitFor(() => elsewhere.length > 0 && b.received.length > 0, 'the messages through the broker');
    expect(b.received).toEqual(['1']);
    expect(elsewhere).toEqual(['2']);
    expect([a, b, c].map((x) => x.inner.forwards().map((f) => f.to))).toEqual([
      [b.transport.replyAddress],
      ['elsewhere'],
      [b.transport.replyAddress],
    ]);
    await elapse(10); // the closed one gets nothing more
    expect(b.received).toEqual(['1']);
    await Promise.all([a.transport.close(), c.transport.close()]);
  });
});
