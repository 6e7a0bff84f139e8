import type { MemoryBroker } from '@lockq/protocol';
import { resolveClientIdentity } from './identity.js';
import type { ClientTransport, ClientTransportHandlers, ClientTransportOptions } from './types.js';

/**
 * The worker side of the in-process broker. Requests carry this client's principal (`principal`,
 * default `'local'`), as RabbitMQ's `user_id` would; replies arrive with origin `'coordinator'`,
 * another client's `forward` with `'forward'`.
 */
export class MemoryClientTransport implements ClientTransport {
  readonly replyAddress: string;
  readonly #principal: string;
  readonly #broker: MemoryBroker;
  #open = false;

  constructor(broker: MemoryBroker, options: ClientTransportOptions) {
    this.#broker = broker;
    const identity = resolveClientIdentity(options, { principal: 'local', from: 'the memory default' });
    this.#principal = identity.principal;
    this.replyAddress = identity.replyAddress;
  }

  async open(handlers: ClientTransportHandlers): Promise<void> {
    this.#broker.subscribeReplies(this.replyAddress, (body, origin) => handlers.onReply(body, origin));
    this.#open = true;
  }

  async send(partition: number, body: Uint8Array): Promise<void> {
    if (!this.#open) throw new Error('memory transport is not open');
    this.#broker.publishRequest(partition, body, this.#principal);
  }

  async forward(address: string, body: Uint8Array): Promise<void> {
    if (!this.#open) throw new Error('memory transport is not open');
    this.#broker.publishReply(address, body, 'forward');
  }

  async close(): Promise<void> {
    if (!this.#open) return;
    this.#open = false;
    this.#broker.unsubscribeReplies(this.replyAddress);
  }
}
