import { replyNamespace } from '@lockq/protocol';

/**
 * How the suites' raw publishers (amqplib, no SDK) speak as the `guest` user the local RabbitMQ
 * gives them: with identity required (the coordinator's default), a request must carry the
 * broker-validated `user_id` and want its answers in `<prefix>.replies.guest.` (docs/security.md §5).
 */
export const RAW_PRINCIPAL = 'guest';

/** Publish options of a raw request: persistent, as the SDK sends them, and vouched for by the broker. */
export const RAW_REQUEST = Object.freeze({ persistent: true, userId: RAW_PRINCIPAL });

/** A reply queue a raw publisher may be answered at: inside guest's reply namespace. */
export function rawReplyQueue(prefix: string, name: string): string {
  return `${replyNamespace(RAW_PRINCIPAL, prefix)}${name}`;
}
