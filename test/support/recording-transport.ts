import { decodeReply, encode, type GrantedReply, type Reply } from '@lockq/protocol';
import { type ClientTransportHandlers, MemoryClientTransport } from '@lockq/worker-sdk/transport';

/** A request as it went out, with the fields the hand-off tests read. */
export type SentRequest = Readonly<Record<string, unknown>> & { readonly op: string; readonly id: string; readonly token?: number };

/**
 * A memory client transport that records what its client forwards, sends and receives, can hold
 * its releases back (to let a forwarded grant overtake them), and can rewrite its forwards.
 */
export class RecordingTransport extends MemoryClientTransport {
  readonly forwarded: GrantedReply[] = [];
  readonly sent: SentRequest[] = [];
  readonly replies: Reply[] = [];
  /** While set, release requests wait in `heldReleases` instead of reaching the broker. */
  holdReleases = false;
  readonly heldReleases: (() => void)[] = [];
  /** Rewrites a forwarded grant before it goes out (a forger's, or a broken holder's). */
  rewriteForward: ((grant: GrantedReply) => GrantedReply) | undefined;

  override forward(address: string, body: Uint8Array): Promise<void> {
    const grant = decodeReply(body) as GrantedReply;
    const rewritten = this.rewriteForward?.(grant);
    this.forwarded.push(rewritten ?? grant);
    return super.forward(address, rewritten === undefined ? body : encode(rewritten));
  }
  override async send(partition: number, body: Uint8Array): Promise<void> {
    const request = JSON.parse(Buffer.from(body).toString()) as SentRequest;
    this.sent.push(request);
    if (this.holdReleases && request.op === 'release') await new Promise<void>((resolve) => this.heldReleases.push(resolve));
    return super.send(partition, body);
  }
  override open(handlers: ClientTransportHandlers): Promise<void> {
    return super.open({
      ...handlers,
      onReply: (body, origin) => {
        this.replies.push(decodeReply(body) as Reply);
        handlers.onReply(body, origin);
      },
    });
  }
  /** The tokens of the releases sent so far. */
  releases(): number[] {
    return this.sent.filter((r) => r.op === 'release').map((r) => r.token as number);
  }
  /** Every `granted` received for request `re` (forwarded copies and the coordinator's). */
  grantsFor(re: string): GrantedReply[] {
    return this.replies.filter((r): r is GrantedReply => r.type === 'granted' && r.re === re);
  }
  /** The first answer to request `id`. */
  answerTo(id: string): Reply | undefined {
    return this.replies.find((r) => r.re === id);
  }
}
