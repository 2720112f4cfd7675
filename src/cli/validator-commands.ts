/**
 * `bkv validator serve|keys` and `bkv witness serve`: the independent parties of DESIGN section 6.
 *
 * A validator's directory holds `validator.json` (its origin and the operator it serves), its two
 * signer keys (`log.key`, named after the origin, and `attestation.key`, mode 0600) and
 * `validator.sqlite` (the audit log and its state). A witness's holds `witness.key` and
 * `witness.sqlite`.
 */
import { announce, intOption, onSignals } from './process-helpers.js';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { Command } from 'commander';
import pino from 'pino';
import { fromHex, toHex } from '../crypto/bytes.js';
import { measureHsmCode } from '../audit/measurement.js';
import { MAX_WINDOW_SECONDS } from '../protocol/statement.js';
import { SIGNATURE_TYPE_COSIGNATURE_V1, isValidKeyName, parseVerifierKey, type SignerKey, type VerifierKey } from '../protocol/tlog/index.js';
import { buildValidatorServer } from '../validator/server.js';
import { Validator } from '../validator/validator.js';
import type { WitnessEndpoint } from '../validator/witness-client.js';
import { buildWitnessServer } from '../witness/server.js';
import { Witness } from '../witness/witness.js';
import { loadOrCreateSignerKey } from './key-files.js';
import { InputError } from './secrets.js';

interface ValidatorConfig {
  origin: string;
  operator?: string;
}

export interface ValidatorKeys {
  origin: string;
  logKey: SignerKey;
  attestationKey: SignerKey;
  config: ValidatorConfig;
}

function vkeyArg(v: string, what: string, type = 1): VerifierKey {
  let text = v;
  // A verifier key or a file holding one (its first line).
  if (!v.includes('+') && existsSync(v)) text = readFileSync(v, 'utf8').split('\n')[0]!.trim();
  let k: VerifierKey;
  try {
    k = parseVerifierKey(text);
  } catch (e) {
    throw new InputError(`${what} is not a verifier key: ${(e as Error).message}`);
  }
  if (k.type !== type) throw new InputError(`${what} has the wrong signature type`);
  return k;
}

/** Loads (creating on first use) the validator's origin and keys in `dir`. */
export async function openValidatorKeys(dir: string, origin?: string): Promise<ValidatorKeys> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const configPath = join(dir, 'validator.json');
  let config: ValidatorConfig;
  if (existsSync(configPath)) {
    config = JSON.parse(readFileSync(configPath, 'utf8')) as ValidatorConfig;
    if (origin !== undefined && origin !== config.origin) throw new InputError(`this validator's origin is ${config.origin}; it cannot change`);
  } else {
    config = { origin: origin ?? `bkv-validator.localhost/${toHex(new Uint8Array(randomBytes(4)))}` };
    if (!isValidKeyName(config.origin)) throw new InputError('--origin must be a key name: no spaces, no plus sign');
    writeFileSync(configPath, `${JSON.stringify(config, null, 2)}\n`);
  }
  const logKey = await loadOrCreateSignerKey(join(dir, 'log.key'), config.origin);
  const attestationKey = await loadOrCreateSignerKey(join(dir, 'attestation.key'), `${config.origin}/attestation`);
  if (logKey.name !== config.origin) throw new InputError('log.key is not named after the origin');
  return { origin: config.origin, logKey, attestationKey, config };
}

function saveConfig(dir: string, config: ValidatorConfig): void {
  writeFileSync(join(dir, 'validator.json'), `${JSON.stringify(config, null, 2)}\n`);
}

function readWitnesses(path: string | undefined): WitnessEndpoint[] {
  if (!path) return [];
  let list: unknown;
  try {
    list = JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    throw new InputError(`cannot read the witness list ${path}`);
  }
  if (!Array.isArray(list)) throw new InputError('the witness list must be a JSON array of {url, vkey}');
  return list.map((w: unknown, i) => {
    const o = w as { url?: unknown; vkey?: unknown };
    if (typeof o?.url !== 'string' || !/^https?:\/\//.test(o.url) || typeof o.vkey !== 'string') throw new InputError(`witness ${i}: {url, vkey} expected`);
    return { url: o.url, key: vkeyArg(o.vkey, `witness ${i}`, SIGNATURE_TYPE_COSIGNATURE_V1) };
  });
}

function collect(v: string, prev: string[]): string[] {
  return [...prev, v];
}

export function registerValidatorCommands(program: Command): void {
  const validator = program.command('validator').description('the independent validator: checks, signs and logs fleet-key statements');

  validator
    .command('serve')
    .description('run the validator and its audit log (a C2SP tlog-tiles log at the server root)')
    .requiredOption('--data <dir>', 'the validator\'s directory (keys, state, log)')
    .option('--host <host>', 'listen address', '127.0.0.1')
    .option('--port <port>', 'listen port (0 = any free port)', '0')
    .option('--origin <name>', 'the log\'s origin (first run only; default bkv-validator.localhost/<random>)')
    .option('--operator-key <vkey|file>', 'the operator\'s verifier key (first run; kept in DIR/validator.json)')
    .option('--witnesses <file>', 'JSON list of witnesses [{url, vkey}]')
    .option('--quorum <k>', 'witness cosignatures required before a checkpoint is published', '0')
    .option('--measurement <sha256:hex>', 'an accepted HSM code measurement (repeatable; default: this build\'s)', collect, [] as string[])
    .option('--max-window-days <n>', 'the longest statement validity window accepted', '30')
    .option('--refresh-seconds <n>', 'how often the checkpoint is cosigned again (fresh timestamps)', '3600')
    .action(async (o: { data: string; host: string; port: string; origin?: string; operatorKey?: string; witnesses?: string; quorum: string; measurement: string[]; maxWindowDays: string; refreshSeconds: string }) => {
      const log = pino({ level: process.env.BKV_LOG_LEVEL ?? 'info', base: { role: 'validator' } }, pino.destination(2));
      const keys = await openValidatorKeys(o.data, o.origin);
      if (o.operatorKey) {
        const k = vkeyArg(o.operatorKey, '--operator-key');
        if (keys.config.operator && keys.config.operator !== k.verifierKey) throw new InputError(`this validator serves the operator ${keys.config.operator}; it cannot change`);
        keys.config.operator = k.verifierKey;
        saveConfig(o.data, keys.config);
      }
      if (!keys.config.operator) throw new InputError('--operator-key is required on the first run');
      const witnesses = readWitnesses(o.witnesses);
      const quorum = intOption(o.quorum, '--quorum', 0, witnesses.length);
      if (quorum === 0) log.warn('no witness quorum: checkpoints are published without cosignatures');
      const measurements = o.measurement.length > 0 ? o.measurement.map((m) => {
        if (!/^sha256:[0-9a-f]{64}$/.test(m)) throw new InputError('--measurement must be sha256:<64 hex digits>');
        return fromHex(m.slice(7));
      }) : [measureHsmCode().digest];
      const v = new Validator({
        dbPath: join(o.data, 'validator.sqlite'),
        origin: keys.origin,
        logKey: keys.logKey,
        attestationKey: keys.attestationKey,
        operator: vkeyArg(keys.config.operator, 'the operator key'),
        policy: { maxWindowSeconds: Math.min(MAX_WINDOW_SECONDS, intOption(o.maxWindowDays, '--max-window-days', 1, 30) * 24 * 3600), measurements },
        witnesses,
        quorum,
        clock: () => Math.floor(Date.now() / 1000),
        log,
      });
      if (!v.latest()) await v.publish(true).catch((e: unknown) => log.warn({ err: (e as Error).message }, 'no first checkpoint yet'));
      v.startRefresh(intOption(o.refreshSeconds, '--refresh-seconds', 1, 7 * 24 * 3600) * 1000);
      const app = buildValidatorServer(v, log);
      const address = await app.listen({ host: o.host, port: intOption(o.port, '--port', 0, 65535) });
      announce({ type: 'ready', role: 'validator', url: address, vkeys: v.verifierKeys(), origin: keys.origin });
      log.info({ url: address, origin: keys.origin, measurements: measurements.map(toHex) }, 'validator listening');
      onSignals(async () => {
        await app.close();
        await v.close();
      });
    });

  validator
    .command('keys')
    .description('print the validator\'s verifier keys (C2SP vkeys), the log key first, then the attestation key')
    .requiredOption('--data <dir>', 'the validator\'s directory')
    .option('--origin <name>', 'the log\'s origin, if the keys are created now')
    .action(async (o: { data: string; origin?: string }) => {
      const keys = await openValidatorKeys(o.data, o.origin);
      process.stdout.write(`${keys.logKey.verifier.verifierKey}\n${keys.attestationKey.verifier.verifierKey}\n`);
    });

  const witness = program.command('witness').description('a transparency-log witness (c2sp.org/tlog-witness)');
  witness
    .command('serve')
    .description('cosign checkpoints of the given logs that are consistent with what it saw before')
    .requiredOption('--data <dir>', 'the witness\'s directory (key and state)')
    .requiredOption('--log <vkey|file>', 'a log to witness: its verifier key, named after its origin (repeatable)', collect, [] as string[])
    .option('--name <name>', 'the witness\'s key name (first run only)')
    .option('--host <host>', 'listen address', '127.0.0.1')
    .option('--port <port>', 'listen port (0 = any free port)', '0')
    .action(async (o: { data: string; log: string[]; name?: string; host: string; port: string }) => {
      const log = pino({ level: process.env.BKV_LOG_LEVEL ?? 'info', base: { role: 'witness' } }, pino.destination(2));
      mkdirSync(o.data, { recursive: true, mode: 0o700 });
      const clock = (): number => Math.floor(Date.now() / 1000);
      const name = o.name ?? `bkv-witness.localhost/${toHex(new Uint8Array(randomBytes(4)))}`;
      if (!isValidKeyName(name)) throw new InputError('--name must be a key name');
      const key = await loadOrCreateSignerKey(join(o.data, 'witness.key'), name, SIGNATURE_TYPE_COSIGNATURE_V1, clock);
      const logs = o.log.map((v, i) => {
        const k = vkeyArg(v, `--log ${i}`);
        return { origin: k.name, keys: [k] };
      });
      const db = new Database(join(o.data, 'witness.sqlite'));
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      const w = new Witness(db, key, logs, clock);
      const app = buildWitnessServer(w, log);
      const address = await app.listen({ host: o.host, port: intOption(o.port, '--port', 0, 65535) });
      announce({ type: 'ready', role: 'witness', url: address, vkey: w.verifierKey });
      log.info({ url: address, vkey: w.verifierKey }, 'witness listening');
      onSignals(async () => {
        await app.close();
        db.close();
      });
    });
}
