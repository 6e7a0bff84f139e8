import { type MemoryBroker, replyDestination } from '@lockq/protocol';
import type { ClientTransport, ClientTransportHandlers, ClientTransportOptions } from './types.js';

export class MemoryClientTransport implements ClientTransport {
  readonly replyAddress: string;
  readonly #broker: MemoryBroker;
  #open = false;

  constructor(broker: MemoryBroker, options: ClientTransportOptions) {
    this.#broker = broker;
    this.replyAddress = replyDestination(options.principal ?? 'local', options.workerId, options.instance, options.prefix);
  }

  async open(handlers: ClientTransportHandlers): Promise<void> {
    this.#broker.subscribeReplies(this.replyAddress, handlers.onReply);
    this.#open = true;
  }

  async send(partition: number, body: Uint8Array): Promise<void> {
    if (!this.#open) throw new Error('memory transport is not open');
    this.#broker.publishRequest(partition, body);
  }

  async forward(address: string, body: Uint8Array): Promise<void> {
    if (!this.#open) throw new Error('memory transport is not open');
    this.#broker.publishReply(address, body);
  }

  async close(): Promise<void> {
    if (!this.#open) return;
    this.#open = false;
    this.#broker.unsubscribeReplies(this.replyAddress);
  }
}
