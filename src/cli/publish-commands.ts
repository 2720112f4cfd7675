/**
 * `bkv fleet operator-key` and `bkv fleet publish`: the operator's tools for bundle mode
 * (DESIGN section 6). `publish` builds the evidence package and the statement from what the
 * fleet's agent reports, signs it with the operator key, submits it to the validator, has the
 * fleet countersign the validated statement, installs the bundle on every member's agent, and
 * (with --server) checks that the front end serves it.
 */
import type { Command } from 'commander';
import { fromHex, toHex } from '../crypto/bytes.js';
import { measureHsmCode } from '../audit/measurement.js';
import { parseBundleJson } from '../protocol/bundle.js';
import { MAX_WINDOW_SECONDS, parseSignedStatement } from '../protocol/statement.js';
import { isValidKeyName } from '../protocol/tlog/index.js';
import { assembleBundle, buildSignedStatement, fetchChainHead, fetchDeployment, installBundle, PublishError, requestCountersignature, submitStatement } from '../validator/publish.js';
import { EXIT } from './exit-codes.js';
import { commandGroup } from './groups.js';
import { createSignerKey, readSignerKey } from './key-files.js';
import { InputError } from './secrets.js';

export interface PublishOptions {
  operatorKey: string;
  validator: string;
  agent: string[];
  server?: string;
  days: string;
  measurement?: string;
}

export interface Published {
  seq: number;
  index: number;
  fleetId: string;
}

/** The whole publication; used by the command and by `bkv dev --validator`. */
export async function publishFleet(o: PublishOptions): Promise<Published> {
  const operator = await readSignerKey(o.operatorKey);
  const days = Number(o.days);
  if (!Number.isFinite(days) || days <= 0 || days * 86400 > MAX_WINDOW_SECONDS) throw new InputError('--days must be more than 0 and at most 30');
  let measurement: Uint8Array;
  if (o.measurement) {
    if (!/^sha256:[0-9a-f]{64}$/.test(o.measurement)) throw new InputError('--measurement must be sha256:<64 hex digits>');
    measurement = fromHex(o.measurement.slice(7));
  } else {
    measurement = measureHsmCode().digest;
  }
  if (o.agent.length === 0) throw new InputError('give the fleet\'s agents with --agent URL');
  const deployment = await fetchDeployment(o.agent[0]!);
  const previous = await fetchChainHead(o.validator);
  const now = Math.floor(Date.now() / 1000);
  // A minute of slack for clocks that are a little behind.
  const { note, evidence, statement } = await buildSignedStatement(operator, { deployment, measurement, ...(previous ? { previous } : {}), notBefore: now - 60, notAfter: now - 60 + Math.floor(days * 86400) });
  const submitted = await submitStatement(o.validator, note, evidence);
  const countersignature = await requestCountersignature(o.agent[0]!, submitted.entry);
  const bundle = assembleBundle(submitted, countersignature);
  const logUrl = o.validator.replace(/\/+$/, '');
  for (const a of o.agent) await installBundle(a, bundle, logUrl);
  if (o.server) {
    const res = await fetch(`${o.server.replace(/\/+$/, '')}/v1/bundle`, { signal: AbortSignal.timeout(30_000) });
    const served = parseBundleJson(await res.json());
    if (parseSignedStatement(served.statement).statement.seq !== statement.seq) throw new PublishError('install', 'NotServed', 'the front end does not serve the new bundle');
  }
  return { seq: statement.seq, index: submitted.index, fleetId: toHex(statement.fleetId) };
}

export function registerPublishCommands(program: Command): void {
  const fleet = commandGroup(program, 'fleet', 'operate a fleet');

  fleet
    .command('operator-key')
    .description('create the operator\'s signing key (a C2SP signer key file, mode 0600) and print its verifier key')
    .requiredOption('--out <file>', 'where to write the signer key (never overwritten)')
    .requiredOption('--name <name>', 'the operator\'s key name, e.g. example.com/backup-vault')
    .action(async (o: { out: string; name: string }) => {
      if (!isValidKeyName(o.name)) throw new InputError('--name must be a key name: no spaces, no plus sign');
      process.stdout.write(`${await createSignerKey(o.out, o.name)}\n`);
    });

  fleet
    .command('publish')
    .description('sign a statement of the fleet\'s keys, have the validator check and log it, the fleet countersign it, and install the bundle')
    .requiredOption('--operator-key <file>', 'the operator\'s signer key file')
    .requiredOption('--validator <url>', 'the validator (its log prefix)')
    .requiredOption('--agent <url...>', 'the agents of the fleet\'s members (operator network)')
    .option('--server <url>', 'the front end: check that it serves the new bundle')
    .option('--days <n>', 'validity of the statement in days (at most 30)', '30')
    .option('--measurement <sha256:hex>', 'the HSM code measurement (default: this build\'s)')
    .action(async (o: PublishOptions) => {
      try {
        const p = await publishFleet(o);
        process.stderr.write(`published: fleet ${p.fleetId} seq ${p.seq}, log index ${p.index}\n`);
      } catch (e) {
        if (e instanceof PublishError) {
          process.stderr.write(`bkv: ${e.message}\n`);
          process.exitCode = e.step === 'validator' && e.code !== 'WitnessQuorum' ? EXIT.trust : EXIT.unavailable;
          return;
        }
        if (e instanceof TypeError && e.message === 'fetch failed') {
          process.stderr.write('bkv: cannot reach the validator or the fleet\n');
          process.exitCode = EXIT.unavailable;
          return;
        }
        throw e;
      }
    });
}
