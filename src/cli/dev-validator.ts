/**
 * `bkv dev --validator`: bundle mode on the local system. Beside the fleet it runs a witness and
 * a validator (each its own process), creates an operator key, publishes the fleet's keys (the
 * operator signs, the validator checks, signs and logs, the witness cosigns, the fleet
 * countersigns), and writes what a bundle-mode client pins:
 *
 *   DIR/validator-keys.txt     the validator's vkeys, one a line, the log key first
 *   DIR/trust-validator.json   validator, log, witness, operator and measurement pins
 *   DIR/operator.key           the operator's signer key (mode 0600)
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { toHex } from '../crypto/bytes.js';
import { measureHsmCode } from '../audit/measurement.js';
import type { ValidatorTrustFile } from '../client/bundle.js';
import { createSignerKey, readSignerKey } from './key-files.js';
import { publishFleet, type Published } from './publish-commands.js';
import { openValidatorKeys } from './validator-commands.js';

/** Starts `bkv <args>` as a supervised process named `role`; resolves with its ready message. */
export type Launch = (role: string, args: string[]) => Promise<{ url?: string; vkey?: unknown }>;

export interface DevValidator {
  validatorUrl: string;
  witnessUrl: string;
  trustPath: string;
  keysPath: string;
  published: Published;
}

export async function startDevValidator(dir: string, agents: string[], launch: Launch): Promise<DevValidator> {
  const vdir = join(dir, 'validator');
  mkdirSync(vdir, { recursive: true, mode: 0o700 });
  const keys = await openValidatorKeys(vdir);
  const operatorPath = join(dir, 'operator.key');
  if (!existsSync(operatorPath)) await createSignerKey(operatorPath, 'bkv-dev.localhost/operator');
  const operator = await readSignerKey(operatorPath);

  const witness = await launch('witness', ['witness', 'serve', '--data', join(dir, 'witness'), '--port', '0', '--log', keys.logKey.verifier.verifierKey]);
  if (!witness.url || typeof witness.vkey !== 'string') throw new Error('the witness did not report its URL and key');
  const witnessesPath = join(dir, 'witnesses.json');
  writeFileSync(witnessesPath, `${JSON.stringify([{ url: witness.url, vkey: witness.vkey }], null, 2)}\n`);

  const measurement = `sha256:${toHex(measureHsmCode().digest)}`;
  const validator = await launch('validator', ['validator', 'serve', '--data', vdir, '--port', '0', '--operator-key', operator.verifier.verifierKey, '--witnesses', witnessesPath, '--quorum', '1', '--measurement', measurement]);
  if (!validator.url) throw new Error('the validator did not report its URL');

  const published = await publishFleet({ operatorKey: operatorPath, validator: validator.url, agent: agents, days: '30', measurement });

  const keysPath = join(dir, 'validator-keys.txt');
  writeFileSync(keysPath, `${keys.logKey.verifier.verifierKey}\n${keys.attestationKey.verifier.verifierKey}\n`);
  const trust: ValidatorTrustFile = {
    version: 1,
    mode: 'validator',
    validator: keys.attestationKey.verifier.verifierKey,
    log: { origin: keys.origin, key: keys.logKey.verifier.verifierKey },
    witnesses: { keys: [witness.vkey], quorum: 1 },
    operator: operator.verifier.verifierKey,
    measurements: [measurement],
    minimum: { seq: 0 },
  };
  const trustPath = join(dir, 'trust-validator.json');
  writeFileSync(trustPath, `${JSON.stringify(trust, null, 2)}\n`);
  return { validatorUrl: validator.url, witnessUrl: witness.url, trustPath, keysPath, published };
}
