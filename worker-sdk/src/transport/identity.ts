import { isPrincipal, RANGES, replyDestination, TOPOLOGY_PREFIX } from '@lockq/protocol';
import type { ClientTransportOptions } from './types.js';

/** Who a client transport is and where its replies go, checked (docs/security.md §5.3). */
export interface ClientIdentity {
  readonly principal: string;
  /** `<prefix>.replies.<principal>.<workerId>.<instance>`, at most 255 bytes. */
  readonly replyAddress: string;
  readonly prefix: string;
}

/**
 * Resolves a client's principal (`options.principal`, else `fallback`: what the broker knows the
 * connection as) and its reply address. Throws a RangeError naming the bad part: a principal
 * outside `[A-Za-z0-9_-]{1,64}`, or an address over the 255 bytes a reply address may have
 * (the part to shorten is the longest of prefix, worker id and instance).
 */
export function resolveClientIdentity(options: ClientTransportOptions, fallback: { readonly principal: string; readonly from: string }): ClientIdentity {
  if (options.workerId === '' || options.instance === '') throw new RangeError('workerId and instance must not be empty');
  const principal = options.principal ?? fallback.principal;
  if (!isPrincipal(principal)) {
    const from = options.principal === undefined ? ` (${fallback.from})` : '';
    throw new RangeError(
      `principal: ${JSON.stringify(principal)}${from} is not a principal: 1 to 64 of A-Z a-z 0-9 _ - ` +
        '(docs/security.md §5); connect as a user with such a name',
    );
  }
  const prefix = options.prefix ?? TOPOLOGY_PREFIX;
  const replyAddress = replyDestination(principal, options.workerId, options.instance, prefix);
  const bytes = Buffer.byteLength(replyAddress);
  if (bytes > RANGES.replyTo.max) {
    const parts = { prefix, workerId: options.workerId, instance: options.instance };
    const [longest] = Object.entries(parts).sort(([, a], [, b]) => Buffer.byteLength(b) - Buffer.byteLength(a))[0] ?? ['workerId'];
    const sizes = Object.entries({ ...parts, principal })
      .map(([name, value]) => `${name} ${Buffer.byteLength(value)}`)
      .join(', ');
    throw new RangeError(
      `${longest}: the reply address <prefix>.replies.<principal>.<workerId>.<instance> would be ${bytes} bytes, ` +
        `over the ${RANGES.replyTo.max} a reply address may have (${sizes} bytes): shorten ${longest}`,
    );
  }
  return { principal, replyAddress, prefix };
}
