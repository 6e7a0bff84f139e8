import type { MemoryBroker } from '@lockq/protocol';
import type { Outbound, ServerTransport } from './types.js';

/** The coordinator side of the in-process broker. */
export class MemoryServerTransport implements ServerTransport {
  readonly #broker: MemoryBroker;
  readonly #handlers = new Map<number, (batch: readonly Uint8Array[]) => Promise<void>>();

  constructor(broker: MemoryBroker) {
    this.#broker = broker;
  }

  /** In process, a consumer never loses its place, so `onLost` is never called. */
  async consume(partition: number, onBatch: (batch: readonly Uint8Array[]) => Promise<void>, _onLost?: () => void): Promise<void> {
    if (this.#handlers.has(partition)) throw new Error(`already consuming partition ${partition}`);
    this.#handlers.set(partition, onBatch);
    this.#broker.consumeRequests(partition, onBatch);
  }

  async publish(replies: readonly Outbound[]): Promise<void> {
    for (const r of replies) this.#broker.publishReply(r.to, r.body);
  }

  async deadLetter(partition: number, body: Uint8Array, code: string): Promise<void> {
    this.#broker.deadLetters.push({ partition, body, code });
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
