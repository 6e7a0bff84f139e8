import { readFileSync } from 'node:fs';
import { resolveTlsOptions, type TlsOptions } from '@lockq/protocol';
import type { TlsFiles } from './settings.js';

/**
 * Reads the `--tls-*` files and checks them (PEM, a key that belongs to its certificate), naming
 * the flag and path of a bad one, so a mistake stops the process at start-up instead of failing
 * every reconnect. Undefined when no flag was given: the connections then trust Node's CAs (and
 * `NODE_EXTRA_CA_CERTS`) and present no certificate.
 */
export function readTlsFiles(files: TlsFiles): TlsOptions | undefined {
  if (files.ca === undefined && files.cert === undefined && files.key === undefined) return undefined;
  const flag = (field: keyof TlsFiles) => `--tls-${field} ${files[field] ?? ''}`;
  const read = (field: keyof TlsFiles): Buffer | undefined => {
    const path = files[field];
    if (path === undefined) return undefined;
    try {
      return readFileSync(path);
    } catch (cause) {
      throw new Error(`${flag(field)}: cannot read it (${(cause as Error).message})`, { cause });
    }
  };
  const [ca, cert, key] = [read('ca'), read('cert'), read('key')];
  const tls: TlsOptions = {
    ...(ca === undefined ? {} : { ca }),
    ...(cert === undefined ? {} : { cert }),
    ...(key === undefined ? {} : { key }),
  };
  resolveTlsOptions(tls, flag);
  return tls;
}
