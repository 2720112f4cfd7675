/**
 * The software HSM's platform: OS randomness, the system clock, NVRAM as two small files, and a
 * secret store sealed at rest. This is the default on one machine; in production the platform is
 * the HSM's own (a vendor's secure-execution environment, or a PKCS#11 token for key material).
 *
 * At rest the secrets are sealed with AES-256-GCM under a device key kept in its own file with
 * mode 0600. On a software HSM this is as strong as the host's file permissions and no stronger
 * (docs/threat-model.md); it keeps the fleet keys out of storage and out of backups of it.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { aesGcmOpen, aesGcmSeal } from '../crypto/server.js';
import { concatBytes, utf8 } from '../crypto/bytes.js';
import type { Nvram, NvramSlot, Platform, SecretStore } from '../hsm/platform.js';

/** Writes a file durably and atomically: temp file, fsync, rename, fsync of the directory. */
export function writeFileDurable(path: string, data: Uint8Array, mode = 0o600): void {
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w', mode);
  try {
    writeSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  const dir = openSync(join(path, '..'), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

function readIfExists(path: string): Uint8Array | null {
  return existsSync(path) ? new Uint8Array(readFileSync(path)) : null;
}

class FileNvram implements Nvram {
  constructor(private readonly dir: string) {}
  read(slot: NvramSlot): Uint8Array | null {
    return readIfExists(join(this.dir, `nvram-${slot}`));
  }
  write(slot: NvramSlot, data: Uint8Array): void {
    writeFileDurable(join(this.dir, `nvram-${slot}`), data);
  }
}

const SEAL_AD = utf8('bkv/v1/softhsm-secrets');

class SealedFileSecretStore implements SecretStore {
  private readonly deviceKey: Uint8Array;
  constructor(private readonly dir: string) {
    const keyPath = join(dir, 'device.key');
    let key = readIfExists(keyPath);
    if (!key) {
      key = new Uint8Array(randomBytes(32));
      writeFileDurable(keyPath, key, 0o600);
    }
    if (key.length !== 32) throw new Error(`${keyPath} is not a 32-byte device key`);
    this.deviceKey = key;
  }
  read(): Uint8Array | null {
    const sealed = readIfExists(join(this.dir, 'secrets.sealed'));
    if (!sealed) return null;
    const pt = aesGcmOpen(this.deviceKey, sealed.subarray(0, 12), sealed.subarray(12), SEAL_AD);
    if (!pt) throw new Error('the HSM secret store does not open under its device key');
    return pt;
  }
  write(data: Uint8Array): void {
    const nonce = new Uint8Array(randomBytes(12));
    writeFileDurable(join(this.dir, 'secrets.sealed'), concatBytes(nonce, aesGcmSeal(this.deviceKey, nonce, data, SEAL_AD)));
  }
}

/** The platform of a software HSM whose private state lives in `dir` (never in storage). */
export function softwarePlatform(dir: string, opts: { now?: () => number } = {}): Platform {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return {
    randomBytes: (n) => new Uint8Array(randomBytes(n)),
    // Tests may pass a clock; the HSM uses it for liveness and the epoch schedule only.
    now: opts.now ?? (() => Date.now()),
    nvram: new FileNvram(dir),
    secrets: new SealedFileSecretStore(dir),
  };
}
