import { type MemoryBroker, TOPOLOGY_PREFIX } from '@lockq/protocol';
import { type DeadLetterBounds, deadLetterPrefix, resolveDeadLetterBounds } from './dead-letter.js';
import type { BatchHandler, Outbound, ServerTransport } from './types.js';

/**
 * The coordinator side of the in-process broker. Each batch comes with the principals its
 * requests were published as (a memory client's `principal`, `'local'` by default; the process
 * trusts itself). Dead letters go to the broker's `deadLetters` list, bounded as on RabbitMQ: the
 * newest `deadLetterMaxLength`, each body cut to `deadLetterBodyBytes` (the list has no place for
 * the original length).
 */
export class MemoryServerTransport implements ServerTransport {
  readonly prefix: string;
  readonly #broker: MemoryBroker;
  readonly #deadLetters: Required<DeadLetterBounds>;
  readonly #handlers = new Map<number, BatchHandler>();

  constructor(broker: MemoryBroker, options: DeadLetterBounds & { readonly prefix?: string } = {}) {
    this.prefix = options.prefix ?? TOPOLOGY_PREFIX;
    this.#broker = broker;
    this.#deadLetters = resolveDeadLetterBounds(options);
  }

  /** In process, a consumer never loses its place, so `onLost` is never called. */
  async consume(partition: number, onBatch: BatchHandler, _onLost?: () => void): Promise<void> {
    if (this.#handlers.has(partition)) throw new Error(`already consuming partition ${partition}`);
    this.#handlers.set(partition, onBatch);
    this.#broker.consumeRequests(partition, onBatch);
  }

  async publish(replies: readonly Outbound[]): Promise<void> {
    for (const r of replies) this.#broker.publishReply(r.to, r.body);
  }

  async deadLetter(partition: number, body: Uint8Array, code: string): Promise<void> {
    const parked = this.#broker.deadLetters;
    while (parked.length >= this.#deadLetters.deadLetterMaxLength) parked.shift();
    // A copy (Buffer's slice is a view): a view would keep the whole poison body alive.
    parked.push({ partition, body: new Uint8Array(deadLetterPrefix(body, this.#deadLetters.deadLetterBodyBytes)), code });
  }

  async stopConsuming(partition: number): Promise<void> {
    const handler = this.#handlers.get(partition);
    if (handler === undefined) return;
    this.#handlers.delete(partition);
    this.#broker.stopConsuming(partition, handler);
  }

  async close(): Promise<void> {
    for (const p of [...this.#handlers.keys()]) await this.stopConsuming(p);
  }
}
