import type { Logger } from 'pino';
import type { ResolvedTlsOptions } from '../tls.js';
import { type KafkaLogCreator, KAFKA_DRIVER_LOG_LEVELS, kafkaLogCreator } from './log.js';
import type { ResolvedKafkaLinkOptions } from './options.js';

/** The part of kafkajs's `KafkaConfig` lockq sets (structurally: kafkajs itself is loaded by each side). */
export interface KafkaClientConfig {
  readonly brokers: string[];
  readonly clientId: string;
  readonly connectionTimeout: number;
  readonly requestTimeout: number;
  readonly retry: { readonly initialRetryTime: number; readonly maxRetryTime: number; readonly retries: number };
  readonly logLevel: number;
  readonly logCreator: KafkaLogCreator;
  /**
   * For `kafkas://`: kafkajs hands these to `tls.connect` for every broker connection, with the
   * broker's host name as `servername` (the name Node checks the certificate against).
   */
  readonly ssl?: ResolvedTlsOptions;
}

/**
 * Attempts of one kafkajs operation before it fails to the adapter (which then rejects, or the
 * consumer crashes and is restarted on the `reconnect` policy): long enough to ride out a leader
 * change, short enough that a caller hears of an outage within seconds.
 */
const DRIVER_RETRIES = 5;

/** The kafkajs client configuration for resolved options; the driver logs through `logger`. */
export function kafkaClientConfig(o: ResolvedKafkaLinkOptions, logger: Logger | undefined): KafkaClientConfig {
  return {
    brokers: [...o.brokers],
    clientId: o.clientId,
    connectionTimeout: o.connectTimeoutMs,
    requestTimeout: o.requestTimeoutMs,
    retry: { initialRetryTime: o.reconnect.initialMs, maxRetryTime: o.reconnect.maxMs, retries: DRIVER_RETRIES },
    logLevel: KAFKA_DRIVER_LOG_LEVELS[o.driverLogLevel],
    logCreator: kafkaLogCreator(logger),
    ...(o.tls === undefined ? {} : { ssl: o.tls }),
  };
}

/** The partition count a topic's metadata lists, or undefined when the topic is missing. */
export function partitionCount(
  metadata: { readonly topics: readonly { readonly name: string; readonly partitions: readonly unknown[] }[] },
  topic: string,
): number | undefined {
  return metadata.topics.find((t) => t.name === topic)?.partitions.length;
}

/**
 * A kafkajs partitioner for records that always name their partition, as every lockq record
 * does: setting one also keeps kafkajs from warning about its default partitioner.
 */
export const explicitPartitioner =
  () =>
  ({ message }: { readonly message: { readonly partition?: number } }): number =>
    message.partition ?? 0;

/** The settings lockq gives every kafkajs consumer, from the link options. */
export function kafkaConsumerSettings(o: ResolvedKafkaLinkOptions) {
  return {
    sessionTimeout: o.sessionTimeoutMs,
    heartbeatInterval: o.heartbeatIntervalMs,
    rebalanceTimeout: o.rebalanceTimeoutMs,
    maxWaitTimeInMs: o.maxWaitMs,
    allowAutoTopicCreation: false,
  } as const;
}

/** The part of kafkajs's `AssignerProtocol` an assigner uses (structurally, as above). */
export interface KafkaAssignerProtocol {
  readonly MemberAssignment: { encode(a: { version: number; assignment: Record<string, number[]>; userData: Buffer }): Buffer };
  readonly MemberMetadata: { encode(m: { version: number; topics: string[]; userData: Buffer }): Buffer };
}

/**
 * A group assigner that gives the group's first member (by id) `partitions` of `topic` and any
 * other member nothing. kafkajs has no `assign()`: a consumer that must read given partitions
 * joins a group of its own with this (a worker its reply partition, a store its changelog).
 */
export function fixedPartitionAssigner(name: string, topic: string, partitions: readonly number[], protocol: KafkaAssignerProtocol) {
  const assignment = { [topic]: [...partitions] };
  return () => ({
    name,
    version: 0,
    async assign({ members }: { members: readonly { memberId: string }[] }) {
      const ids = members.map((m) => m.memberId).sort();
      return ids.map((memberId, i) => ({
        memberId,
        memberAssignment: protocol.MemberAssignment.encode({ version: 0, assignment: i === 0 ? assignment : {}, userData: Buffer.alloc(0) }),
      }));
    },
    protocol({ topics }: { topics: string[] }) {
      return { name, metadata: protocol.MemberMetadata.encode({ version: 0, topics, userData: Buffer.alloc(0) }) };
    },
  });
}
