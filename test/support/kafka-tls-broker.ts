/**
 * A Kafka broker of a test's own that speaks only TLS (never the shared one at 9092/9093): a
 * second single-node KRaft broker from the jars `kafka/start.sh` resolved, in a temporary
 * directory, with a TLS client listener that requires a client certificate, and the throwaway
 * CA and certificates it runs with, made with openssl.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { kafkaApiVersionsRequest } from './brokers.js';
import { freePort } from './faults-redis.js';
import { waitFor } from './wait-for.js';

const execFileP = promisify(execFile);

/** The repository's kafka/ directory: pom.xml, server.properties and the logging configurations. */
const KAFKA_DIR = fileURLToPath(new URL('../../kafka/', import.meta.url));

/** PEM files of a throwaway CA, a broker certificate it signed and a client certificate it signed. */
export interface TestCerts {
  readonly dir: string;
  readonly caFile: string;
  /** The broker's certificate (subjectAltName DNS:localhost only) and its key. */
  readonly serverCertFile: string;
  readonly serverKeyFile: string;
  /** A client certificate (CN lockq-client, extendedKeyUsage clientAuth) and its key. */
  readonly clientCertFile: string;
  readonly clientKeyFile: string;
}

/**
 * Makes the CA and certificates in a new temporary directory (EC P-256, valid one day). The
 * broker's certificate names `localhost` and no IP address, so a client that connects to
 * 127.0.0.1 sees host name verification fail.
 */
export async function makeTestCerts(): Promise<TestCerts> {
  const dir = mkdtempSync(join(tmpdir(), 'lockq-kafka-tls-certs-'));
  const f = (name: string) => join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const sign = (name: string, ext: string) =>
    // biome-ignore format: openssl's arguments read best in pairs
    execFileP('openssl', [
      'x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial',
      '-out', f(`${name}.pem`), '-days', '1', '-extfile', f(ext),
    ]);
  await execFileP('openssl', ['req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '1', '-subj', '/CN=lockq test CA']);
  await execFileP('openssl', ['req', ...ec, '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=localhost']);
  writeFileSync(f('server.cnf'), 'subjectAltName=DNS:localhost\n');
  await sign('server', 'server.cnf');
  await execFileP('openssl', ['req', ...ec, '-keyout', f('client.key'), '-out', f('client.csr'), '-subj', '/CN=lockq-client']);
  writeFileSync(f('client.cnf'), 'extendedKeyUsage=clientAuth\n');
  await sign('client', 'client.cnf');
  return {
    dir,
    caFile: f('ca.pem'),
    serverCertFile: f('server.pem'),
    serverKeyFile: f('server.key'),
    clientCertFile: f('client.pem'),
    clientKeyFile: f('client.key'),
  };
}

/**
 * The Kafka version kafka/start.sh runs: `LOCKQ_KAFKA_VERSION`, else the one pinned in
 * kafka/pom.xml.
 */
function kafkaVersion(): string {
  const pinned = /<kafka\.version>([^<]+)<\/kafka\.version>/.exec(readFileSync(join(KAFKA_DIR, 'pom.xml'), 'utf8'))?.[1];
  const version = process.env.LOCKQ_KAFKA_VERSION ?? pinned;
  if (version === undefined) throw new Error('kafka/pom.xml pins no kafka.version');
  return version;
}

/**
 * The broker's classpath: the one kafka/start.sh cached beside its data (when it was resolved
 * from this pom.xml and every jar is still there), else resolved with Maven as start.sh does,
 * into `into` (never into start.sh's cache, which a concurrent start.sh may be writing).
 */
export async function kafkaClasspath(into: string): Promise<string> {
  const version = kafkaVersion();
  const run = join(process.env.LOCKQ_KAFKA_DIR ?? '/tmp/lockq-kafka', version);
  const pom = join(KAFKA_DIR, 'pom.xml');
  const pomSum = createHash('sha256').update(readFileSync(pom)).digest('hex');
  const cached = join(run, 'classpath.txt');
  const sumFile = join(run, 'classpath.pom-sha256');
  if (existsSync(cached) && existsSync(sumFile) && readFileSync(sumFile, 'utf8').trim() === pomSum) {
    const classpath = readFileSync(cached, 'utf8').trim();
    if (classpath !== '' && classpath.split(':').every((jar) => existsSync(jar))) return classpath;
  }
  const out = join(into, 'classpath.txt');
  const profile = Number(version.split('.')[0]) >= 4 ? 'kafka4' : 'kafka3';
  // biome-ignore format: one option per line
  await execFileP('mvn', [
    '-B', '-q', '-Dstyle.color=never', '-f', pom, '-P', profile, `-Dkafka.version=${version}`,
    'dependency:build-classpath', `-Dmdep.outputFile=${out}`,
  ], { maxBuffer: 16 * 1024 * 1024 });
  return readFileSync(out, 'utf8').trim();
}

/** The certificate material a client presents to {@link KafkaTlsBroker}'s probe. */
interface ProbeTls {
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
}

/** True when the broker at localhost:`port` answers ApiVersions over TLS, this client certificate presented. */
function answersOverTls(port: number, tls: ProbeTls): Promise<boolean> {
  const correlationId = 0x6b35; // "k5"
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: 'localhost', port, servername: 'localhost', ...tls });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1500, () => done(false));
    socket.once('error', () => done(false));
    socket.once('secureConnect', () => socket.write(kafkaApiVersionsRequest(correlationId)));
    socket.once('data', (reply: Buffer) => done(reply.length >= 10 && reply.readInt32BE(4) === correlationId && reply.readInt16BE(8) === 0));
  });
}

/**
 * The configuration: the repository's kafka/server.properties (the same topic, group and size
 * settings as the shared broker) with these lines after it, which win (a later key in a Java
 * properties file replaces an earlier one).
 */
function serverProperties(o: { dir: string; port: number; controllerPort: number; certs: TestCerts }): string {
  const base = readFileSync(join(KAFKA_DIR, 'server.properties'), 'utf8');
  return `${base}
# --- a TLS-only broker of one test's own (test/support/kafka-tls-broker.ts) ---
controller.quorum.voters=1@127.0.0.1:${o.controllerPort}
listeners=SSL://127.0.0.1:${o.port},CONTROLLER://127.0.0.1:${o.controllerPort}
# The name clients connect to after bootstrapping: the one the certificate names.
advertised.listeners=SSL://localhost:${o.port}
# The broker's own connections (transaction markers) go over TLS too, with its certificate.
inter.broker.listener.name=SSL
listener.security.protocol.map=CONTROLLER:PLAINTEXT,SSL:SSL
ssl.keystore.type=PEM
ssl.keystore.location=${join(o.dir, 'keystore.pem')}
ssl.truststore.type=PEM
ssl.truststore.location=${o.certs.caFile}
ssl.client.auth=required
log.dirs=${join(o.dir, 'data')}
offsets.topic.num.partitions=1
transaction.state.log.num.partitions=1
num.network.threads=1
num.io.threads=2
background.threads=2
log.cleaner.dedupe.buffer.size=4194304
`;
}

/**
 * A single-node KRaft broker whose only client listener is TLS with `ssl.client.auth=required`,
 * advertised as `localhost:<port>`, its key store and trust store given as PEM files. Start it
 * with {@link KafkaTlsBroker.start}; {@link KafkaTlsBroker.stop} kills it and deletes its
 * directory (so does this process exiting).
 */
export class KafkaTlsBroker {
  readonly #child: ChildProcess;
  readonly #exited: Promise<void>;
  readonly #dir: string;
  readonly #killOnExit = () => this.#child.kill('SIGKILL');
  #output = '';

  private constructor(
    readonly port: number,
    dir: string,
    args: readonly string[],
  ) {
    this.#dir = dir;
    this.#child = spawn('java', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    for (const stream of [this.#child.stdout, this.#child.stderr]) {
      stream?.setEncoding('utf8').on('data', (d: string) => {
        this.#output = (this.#output + d).slice(-4000);
      });
    }
    this.#exited = new Promise((resolve) => this.#child.once('exit', () => resolve()));
    // A test run that ends without stop() (a crash, a timeout) must not leave a broker behind.
    process.once('exit', this.#killOnExit);
  }

  /** `localhost:<port>`: the name its certificate holds. */
  get address(): string {
    return `localhost:${this.port}`;
  }

  /** Formats a new storage directory, starts the broker and waits until it answers over TLS. */
  static async start(certs: TestCerts, o: { readonly timeoutMs?: number } = {}): Promise<KafkaTlsBroker> {
    const dir = mkdtempSync(join(tmpdir(), 'lockq-kafka-tls-'));
    try {
      const [port, controllerPort] = [await freePort(), await freePort()];
      // Kafka's PEM key store is one file: the private key (PKCS#8) and the certificate chain.
      writeFileSync(join(dir, 'keystore.pem'), readFileSync(certs.serverKeyFile, 'utf8') + readFileSync(certs.serverCertFile, 'utf8'));
      const config = join(dir, 'server.properties');
      writeFileSync(config, serverProperties({ dir, port, controllerPort, certs }));
      const classpath = await kafkaClasspath(dir);
      // Small and quick to start: the machine is shared with the test broker, RabbitMQ and Redis.
      // biome-ignore format: one option per line
      const jvm = [
        '-Xms64m', '-Xmx256m', '-XX:+UseSerialGC', '-XX:TieredStopAtLevel=1', '-Djava.awt.headless=true',
        `-Dkafka.logs.dir=${dir}`,
        `-Dlog4j.configuration=file:${join(KAFKA_DIR, 'log4j.properties')}`,
        `-Dlog4j2.configurationFile=${join(KAFKA_DIR, 'log4j2.properties')}`,
        '-cp', classpath,
      ];
      const clusterId = randomBytes(16).toString('base64url');
      await execFileP('java', [...jvm, 'kafka.tools.StorageTool', 'format', '-t', clusterId, '-c', config]).catch((err: unknown) => {
        throw new Error(`formatting the TLS broker's storage failed: ${(err as { stdout?: string }).stdout ?? ''}`, { cause: err });
      });
      const broker = new KafkaTlsBroker(port, dir, [...jvm, 'kafka.Kafka', config]);
      const probe = { ca: readFileSync(certs.caFile), cert: readFileSync(certs.clientCertFile), key: readFileSync(certs.clientKeyFile) };
      try {
        await waitFor(
          () => {
            if (broker.#child.exitCode !== null) throw new Error(`the TLS broker exited with ${broker.#child.exitCode}:\n${broker.#log()}`);
            return answersOverTls(port, probe);
          },
          () => `the TLS broker to answer ApiVersions on ${broker.address}:\n${broker.#log()}`,
          { timeoutMs: o.timeoutMs ?? 60_000, intervalMs: 200 },
        );
      } catch (err) {
        await broker.stop();
        throw err;
      }
      return broker;
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /** The broker's output and the end of its server.log, for a failure's message. */
  #log(): string {
    const file = join(this.#dir, 'server.log');
    const log = existsSync(file) ? readFileSync(file, 'utf8').slice(-3000) : '';
    return `${this.#output}\n${log}`;
  }

  /** Kills the broker (its data is thrown away, so no clean shutdown) and deletes its directory. */
  async stop(): Promise<void> {
    process.off('exit', this.#killOnExit);
    this.#child.kill('SIGKILL');
    await this.#exited;
    rmSync(this.#dir, { recursive: true, force: true });
  }
}
