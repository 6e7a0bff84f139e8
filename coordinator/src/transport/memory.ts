import type { MemoryBroker } from '@lockq/worker-sdk/transport';
import type { Outbound, ServerTransport } from './types.js';

/** The coordinator side of the in-process broker. */
export class MemoryServerTransport implements ServerTransport {
  readonly #broker: MemoryBroker;

  constructor(broker: MemoryBroker) {
    this.#broker = broker;
  }

  async consume(partition: number, onBatch: (batch: readonly Uint8Array[]) => Promise<void>): Promise<void> {
    this.#broker.consumeRequests(partition, onBatch);
  }

  async publish(replies: readonly Outbound[]): Promise<void> {
    for (const r of replies) this.#broker.publishReply(r.to, r.body);
  }

  async deadLetter(partition: number, body: Uint8Array, code: string): Promise<void> {
    this.#broker.deadLetters.push({ partition, body, code });
  }

  async stopConsuming(partition: number): Promise<void> {
    this.#broker.stopConsuming(partition);
  }

  async close(): Promise<void> {}
}
