import type { ChannelModel, ConfirmChannel, ConsumeMessage } from 'amqplib';
import { deadLetterDestination, replyDestination, requestDestination } from '@lockq/protocol';
import { AMQP_URL, deleteTopology, inBatches, uniquePrefix } from './lockq-amqp.js';
import { closedLoop } from './workload.js';

/**
 * The raw floor under lockq over RabbitMQ: amqplib directly, the same topology and the same
 * delivery guarantees, and nothing decided. A no-op responder answers each request on the
 * requester's own reply queue; a round trip is one request and its reply, which is what each
 * half of a lockq acquire+release cycle costs at the least.
 *
 * Same as lockq: a durable quorum request queue declared with the coordinator's arguments,
 * persistent mandatory requests on a confirm channel, a durable reply queue per requester with
 * `x-expires`, transient replies on the responder's confirm channel, prefetch 256 on both
 * sides, manual acks, cumulative and coalesced per macrotask, the responder acking a request
 * only once its reply is confirmed. Unlike lockq, the responder pipelines: it answers each
 * delivery at once instead of in serial batches, so this is the broker's best, not lockq's
 * structure.
 */

const PREFETCH = 256;
/** About the size of a lockq acquire request and its grant. */
const REQUEST = Buffer.alloc(280, 'r');
const REPLY = Buffer.alloc(200, 'g');

/** The coordinator's request-queue arguments (AmqpServerTransport defaults), repeated here. */
function requestQueueArguments(prefix: string): Record<string, string | number | boolean> {
  return {
    'x-queue-type': 'quorum',
    'x-single-active-consumer': true,
    'x-overflow': 'reject-publish',
    'x-delivery-limit': 20,
    'x-dead-letter-exchange': deadLetterDestination(prefix),
  };
}

/** Acks the latest message handed over, once per macrotask, with one cumulative ack. */
function coalescedAcker(ch: { ack(message: ConsumeMessage, allUpTo?: boolean): void }): (msg: ConsumeMessage) => void {
  let latest: ConsumeMessage | null = null;
  return (msg) => {
    if (latest === null) {
      setImmediate(() => {
        const m = latest;
        latest = null;
        try {
          if (m !== null) ch.ack(m, true);
        } catch {
          // closing: the broker requeues what was not acked, and nothing consumes it any more
        }
      });
    }
    latest = msg;
  };
}

/**
 * The responder's acks: a request is acked once its reply and every earlier one are confirmed.
 * The broker may confirm replies out of order (they go to different queues), so a cumulative
 * ack covers only the confirmed prefix of the deliveries.
 */
function confirmedPrefixAcker(ch: { ack(message: ConsumeMessage, allUpTo?: boolean): void }): (msg: ConsumeMessage) => () => void {
  const order: { readonly msg: ConsumeMessage; confirmed: boolean }[] = [];
  let head = 0;
  const ack = coalescedAcker(ch);
  return (msg) => {
    const entry = { msg, confirmed: false };
    order.push(entry);
    return () => {
      entry.confirmed = true;
      let last: ConsumeMessage | null = null;
      for (let e = order[head]; e?.confirmed === true; e = order[++head]) last = e.msg;
      if (head > 1024) {
        order.splice(0, head);
        head = 0;
      }
      if (last !== null) ack(last);
    };
  };
}

interface Requester {
  readonly conn: ChannelModel;
  readonly replyQueue: string;
  roundTrip(): Promise<void>;
}

export interface Floor {
  readonly prefix: string;
  /** Round trips/s with `n` requesters and their latencies (ms). */
  run(n: number, seconds: number): Promise<{ rate: number; latencies: number[] }>;
  close(): Promise<void>;
}

export async function openFloor(requesters: number): Promise<Floor> {
  const amqp = await import('amqplib');
  const prefix = uniquePrefix('floor');
  const queue = requestDestination(0, prefix);
  const conns: ChannelModel[] = [];
  const replyQueues: string[] = [];
  const close = async () => {
    await Promise.all(conns.map((c) => c.close().catch(() => undefined)));
    await deleteTopology([queue, ...replyQueues], []);
  };
  try {
    // The responder: one connection, a consuming channel and a confirm channel for replies.
    const server = await amqp.connect(AMQP_URL, { noDelay: true });
    conns.push(server);
    server.on('error', () => {});
    const consumer = await server.createChannel();
    const pub = await server.createConfirmChannel();
    await consumer.prefetch(PREFETCH);
    await consumer.assertQueue(queue, { durable: true, arguments: requestQueueArguments(prefix) });
    const delivered = confirmedPrefixAcker(consumer);
    await consumer.consume(
      queue,
      (msg) => {
        if (msg === null) return;
        const confirmed = delivered(msg);
        pub.publish('', String(msg.properties.replyTo), REPLY, {}, (err: unknown) => {
          if (err == null) confirmed();
        });
      },
      { noAck: false },
    );

    const list = await inBatches(requesters, 16, async (i): Promise<Requester> => {
      const conn = await amqp.connect(AMQP_URL, { noDelay: true });
      conns.push(conn);
      conn.on('error', () => {});
      const ch: ConfirmChannel = await conn.createConfirmChannel();
      const replyQueue = replyDestination('guest', `floor-${i}`, 'x', prefix);
      replyQueues.push(replyQueue);
      await ch.assertQueue(replyQueue, { durable: true, exclusive: false, autoDelete: false, arguments: { 'x-expires': 60_000 } });
      await ch.prefetch(PREFETCH);
      const ackReply = coalescedAcker(ch);
      let waiting: (() => void) | null = null;
      let timer: NodeJS.Timeout | undefined;
      await ch.consume(
        replyQueue,
        (msg) => {
          if (msg === null) return;
          ackReply(msg);
          const done = waiting;
          waiting = null;
          clearTimeout(timer);
          done?.();
        },
        { noAck: false },
      );
      return {
        conn,
        replyQueue,
        roundTrip: () =>
          new Promise<void>((resolve, reject) => {
            waiting = resolve;
            timer = setTimeout(() => reject(new Error(`no reply on ${replyQueue} within 10 s`)), 10_000);
            // Like the SDK: the answer is what is awaited; a refused publish fails the run.
            ch.sendToQueue(queue, REQUEST, { persistent: true, mandatory: true, replyTo: replyQueue }, (err: unknown) => {
              if (err != null) reject(new Error('the broker refused a request', { cause: err }));
            });
          }),
      };
    });
    await Promise.all(list.map((r) => r.roundTrip()));
    return {
      prefix,
      async run(n, seconds) {
        const r = await closedLoop(n, seconds, async (i) => {
          const t0 = performance.now();
          await (list[i] as Requester).roundTrip();
          return performance.now() - t0;
        });
        return { rate: r.rate, latencies: r.latencies };
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
