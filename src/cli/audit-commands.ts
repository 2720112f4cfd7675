/**
 * `bkv audit log` and `bkv audit bundle` (DESIGN section 6): follow a validator's log with only
 * its vkeys, and check a fleet's bundle as a bundle-mode client would, without using it.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { toHex } from '../crypto/bytes.js';
import { BundleError, consistencyReference, fetchBundle, memoryStateStore, verifyBundle } from '../client/bundle.js';
import { ProtocolError } from '../protocol/errors.js';
import { parseVerifierKey, SIGNATURE_TYPE_COSIGNATURE_V1, type VerifierKey } from '../protocol/tlog/index.js';
import { auditLog, previousFromNote } from '../audit/log.js';
import { loadValidatorTrust } from './bundle-vault.js';
import { fileStateStore } from './client-state.js';
import { EXIT, exitCodeOf } from './exit-codes.js';
import { commandGroup } from './groups.js';
import { InputError } from './secrets.js';

function vkeys(path: string): VerifierKey[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    throw new InputError(`cannot read ${path}`);
  }
  return text.split('\n').map((l) => l.trim()).filter((l) => l.length > 0).map((l) => {
    try {
      return parseVerifierKey(l);
    } catch (e) {
      throw new InputError(`${path}: not a verifier key: ${(e as Error).message}`);
    }
  });
}

function collect(v: string, prev: string[]): string[] {
  return [...prev, v];
}

export function registerAuditCommands(program: Command): void {
  const audit = commandGroup(program, 'audit', 'verify the validator\'s log and fleets\' bundles');

  audit
    .command('log')
    .description('follow a validator\'s audit log: checkpoint, consistency, entries, signatures, per-operator chains, key changes')
    .requiredOption('--log <url>', 'the log\'s prefix URL')
    .requiredOption('--vkeys <file>', 'the validator\'s verifier keys, the log key first (bkv dev writes DIR/validator-keys.txt)')
    .option('--operator <vkey>', 'an operator key whose signatures to check (repeatable)', collect, [] as string[])
    .option('--witness <vkey>', 'a witness cosigner key (repeatable)', collect, [] as string[])
    .option('--quorum <k>', 'witness cosignatures required', '0')
    .option('--state <file>', 'where the last verified checkpoint and any evidence are kept')
    .option('--evidence', 'also fetch and verify every evidence package')
    .option('--json', 'print the report as JSON')
    .action(async (o: { log: string; vkeys: string; operator: string[]; witness: string[]; quorum: string; state?: string; evidence?: boolean; json?: boolean }) => {
      const [logKey, attestationKey] = vkeys(o.vkeys);
      if (!logKey || !attestationKey) throw new InputError('--vkeys must hold the log key and the attestation key');
      const witnesses = o.witness.map((w) => parseVerifierKey(w));
      if (witnesses.some((w) => w.type !== SIGNATURE_TYPE_COSIGNATURE_V1)) throw new InputError('--witness takes cosigner keys (type 0x04)');
      const state = o.state && existsSync(o.state) ? (JSON.parse(readFileSync(o.state, 'utf8')) as { checkpoint?: string; evidence?: unknown[] }) : {};
      const report = await auditLog({
        url: o.log,
        origin: logKey.name,
        logKey,
        attestationKey,
        operators: o.operator.length ? o.operator.map((k) => parseVerifierKey(k)) : undefined,
        witnesses,
        quorum: Number(o.quorum),
        ...(state.checkpoint ? { previous: previousFromNote(state.checkpoint) } : {}),
        evidence: o.evidence ?? false,
      });
      if (o.state) {
        // Keep the newest consistent checkpoint; keep both notes of an inconsistency as evidence.
        const next = report.inconsistent ? { ...state, evidence: [...(state.evidence ?? []), report.inconsistent] } : { ...state, checkpoint: report.checkpoint };
        writeFileSync(o.state, `${JSON.stringify(next, null, 2)}\n`);
      }
      if (o.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      else {
        process.stdout.write(`log ${logKey.name}: ${report.entries} entries, checkpoint size ${report.size}, cosigned by ${report.cosigners.length ? report.cosigners.join(', ') : 'no known witness'}\n`);
        for (const c of report.changes) process.stdout.write(`  ${c}\n`);
        for (const f of report.findings) process.stdout.write(`PROBLEM${f.index !== undefined ? ` at entry ${f.index}` : ''}: ${f.problem}\n`);
        if (report.inconsistent) process.stdout.write(`MISBEHAVIOUR: two inconsistent checkpoints (${report.inconsistent.reason})\n--- seen before\n${report.inconsistent.previous}\n--- now\n${report.inconsistent.current}\n`);
      }
      if (report.findings.length > 0 || report.inconsistent) process.exitCode = EXIT.trust;
    });

  audit
    .command('bundle')
    .description('fetch a fleet\'s validation bundle and verify it as a bundle-mode client would')
    .requiredOption('--server <url>', 'the front end')
    .requiredOption('--trust-validator <file>', 'the pinned validator, witnesses and operator')
    .option('--state <file>', 'client state to check against and update (default: none kept)')
    .action(async (o: { server: string; trustValidator: string; state?: string }) => {
      const trust = loadValidatorTrust(o.trustValidator);
      const store = o.state ? fileStateStore(o.state) : memoryStateStore();
      try {
        const ref = consistencyReference(trust, await store.load());
        const b = await fetchBundle(o.server, ref?.size);
        const v = await verifyBundle(b, trust, store, { now: Math.floor(Date.now() / 1000) });
        const s = v.statement;
        process.stdout.write(`bundle OK: fleet ${toHex(s.fleetId)} seq ${s.seq}, valid ${new Date(s.notBefore * 1000).toISOString()} to ${new Date(s.notAfter * 1000).toISOString()}, log index ${v.index} of ${v.checkpoint.treeSize}, cosigned by ${v.cosigners.join(', ') || 'no witness'}\n`);
      } catch (e) {
        if (e instanceof BundleError) {
          process.stderr.write(`bkv: the bundle failed verification (${e.code}): ${e.message}\n`);
          process.exitCode = EXIT.trust;
          return;
        }
        if (e instanceof ProtocolError) {
          process.stderr.write(`bkv: ${e.message}\n`);
          process.exitCode = exitCodeOf(e.code);
          return;
        }
        throw e;
      }
    });
}
