import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { CoordinatorMetrics } from '@lockq/coordinator';
import { AdminServer } from '@lockq/coordinator';
import { Coordinator } from '@lockq/coordinator';
import { storeOpener } from './open-store.js';
import { openServerTransport } from './open-transport.js';
import { type CoordinatorSettings, redactUrl } from './settings.js';

export interface CoordinatorCommandOptions {
  readonly settings: CoordinatorSettings;
  readonly logger: Logger;
  /** Resolves with the name of the signal that asks for a graceful stop. */
  readonly stopRequested: Promise<string>;
}

/**
 * `lockq coordinator`: admin listener first (so `/healthz` answers while the broker is still being
 * reached), then the coordinator; on the stop signal, drain: `/readyz` turns 503, consuming stops,
 * the batch in progress is decided and answered, then the listener closes. Resolves with the exit code.
 */
export async function runCoordinatorCommand(o: CoordinatorCommandOptions): Promise<number> {
  const s = o.settings;
  const log = o.logger.child({ component: 'cli' });
  // Before anything is opened or logged, so a bad store URL fails without side effects.
  const openStore = storeOpener(s, o.logger);
  log.info(
    {
      transport: redactUrl(s.transport),
      store: s.store === undefined ? undefined : redactUrl(s.store),
      partitions: s.partitions,
      own: s.ownPartitions ?? 'all',
      prefix: s.prefix,
      maxQueueLength: s.maxQueueLength ?? 'unbounded',
      identity: s.identity,
      principalRate: s.principalRate ?? 'none',
    },
    'coordinator starting',
  );

  let handOffSecret: Buffer | undefined;
  try {
    handOffSecret = s.secretFile === undefined ? undefined : await readFile(s.secretFile);
  } catch (err) {
    log.error({ err, path: s.secretFile }, 'cannot read the secret file');
    return 1;
  }

  const metrics = new CoordinatorMetrics({ processMetrics: true });
  let admin: AdminServer;
  try {
    admin = await AdminServer.listen({ host: s.adminHost, port: s.adminPort, metrics, logger: o.logger });
  } catch (err) {
    log.error({ err, host: s.adminHost, port: s.adminPort }, 'cannot bind the admin listener');
    return 1;
  }

  let transportFailed!: (err: Error) => void;
  const failure = new Promise<Error>((resolve) => {
    transportFailed = resolve;
  });
  let coordinator: Coordinator;
  try {
    const transport = await openServerTransport(s, o.logger, {
      reconnected: () => metrics.reconnected(),
      failed: (err) => transportFailed(err),
    });
    const store = await openStore(transport);
    const starting = Coordinator.start({
      transport,
      ...(store === undefined ? {} : { store }),
      partitions: s.partitions,
      ...(s.ownPartitions === undefined ? {} : { ownPartitions: s.ownPartitions }),
      logger: o.logger,
      observer: metrics,
      ...(handOffSecret === undefined ? {} : { handOffSecret }),
      identity: s.identity,
      ...(s.principalRate === undefined ? {} : { principalRate: { perSecond: s.principalRate, burst: 2 * s.principalRate } }),
    });
    const first = await Promise.race([starting, o.stopRequested]);
    if (typeof first === 'string') {
      log.info({ signal: first }, 'stop requested before the coordinator was ready');
      // Not waiting for a broker that may not be there: exiting drops whatever start opened, as
      // a crash would, and requests not yet acknowledged go back to the broker.
      starting.catch(() => {});
      await admin.close();
      return 0;
    }
    coordinator = first;
  } catch (err) {
    log.error({ err }, 'coordinator failed to start');
    await admin.close();
    return 1;
  }

  metrics.attach(coordinator);
  admin.serve(coordinator);
  log.info({ admin: admin.url, partitions: coordinator.options.ownPartitions }, 'coordinator ready');

  const reason = await Promise.race([o.stopRequested, failure]);
  let code = 0;
  if (typeof reason === 'string') {
    log.info({ signal: reason }, 'draining: no new requests are taken; answering the batch in progress');
  } else {
    // Exit non-zero so a supervisor restarts it; the broker hands the partitions to a standby.
    log.error({ err: reason }, 'the transport gave up; stopping');
    code = 1;
  }
  admin.drain();
  try {
    await coordinator.stop();
  } catch (err) {
    log.error({ err }, 'coordinator did not stop cleanly');
    code = 1;
  }
  await admin.close();
  log.info({ code }, 'exiting');
  return code;
}
