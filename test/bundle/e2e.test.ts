/**
 * Bundle mode through real processes: `bkv dev --validator` runs the fleet, a witness and a
 * validator; a client that pins only the validator, the witness and the operator registers and
 * recovers; every pin alone changed makes the client exit 7 with nothing sent to the fleet
 * (I7); the log is readable with the vkeys alone; a restart publishes seq 2 and the client
 * follows it with a consistency proof.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { newSignerKey, openCheckpoint, parseVerifierKey } from '../../src/protocol/tlog/index.js';
import type { ValidatorTrustFile } from '../../src/client/bundle.js';
import { bkv, startDev, type DevSystem } from '../helpers/dev.js';

let dev: DevSystem;
const dir = mkdtempSync(join(tmpdir(), 'bkv-e2e-bundle-'));
const trustPath = join(dir, 'trust-validator.json');

beforeAll(async () => {
  dev = await startDev(dir, ['--validator']);
}, 90_000);
afterAll(async () => {
  await dev?.stop();
});

const conn = (user: string, trust = trustPath, state = join(dir, 'client-state.json')): string[] => ['--server', dev.url, '--trust-validator', trust, '--state', state, '--user', user];

/** Vault requests the front end has relayed so far (all types and outcomes). */
async function relayed(): Promise<number> {
  const text = await (await fetch(`${dev.url}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith('bkv_frontend_requests_total{'))
    .reduce((n, l) => n + Number(l.split(' ').pop()), 0);
}

function trustWith(change: (t: ValidatorTrustFile) => void): string {
  const t = JSON.parse(readFileSync(trustPath, 'utf8')) as ValidatorTrustFile;
  change(t);
  const p = join(dir, `trust-${Math.random().toString(16).slice(2)}.json`);
  writeFileSync(p, JSON.stringify(t));
  return p;
}

describe('bkv dev --validator', () => {
  it('lists the validator with the log prefix as its url, and writes its vkeys, the log key first', async () => {
    const v = dev.processes.find((p) => p.role === 'validator')!;
    expect(v.pid).toBeGreaterThan(0);
    const keys = readFileSync(join(dir, 'validator-keys.txt'), 'utf8').trim().split('\n');
    expect(keys).toHaveLength(2);
    const logKey = parseVerifierKey(keys[0]!);
    const res = await fetch(`${v.url}/checkpoint`);
    expect(res.headers.get('content-type')).toBe('text/plain; charset=utf-8');
    const cp = await openCheckpoint(await res.text(), { origin: logKey.name, log: logKey });
    expect(cp.checkpoint.treeSize).toBeGreaterThanOrEqual(1);
    expect(bkv(['validator', 'keys', '--data', join(dir, 'validator')]).stdout.trim().split('\n')).toEqual(keys);
  });

  it('a client that pins the validator, not the fleet, registers and recovers', () => {
    const reg = bkv(['register', ...conn('alice'), '--password-stdin', '--print-key'], 'pw\n');
    expect(reg.code).toBe(0);
    const rec = bkv(['recover', ...conn('alice'), '--password-stdin'], 'pw\n');
    expect(rec.code).toBe(0);
    expect(rec.stdout).toBe(reg.stdout);
    const state = JSON.parse(readFileSync(join(dir, 'client-state.json'), 'utf8')) as { fleets: Record<string, { seq: number }> };
    expect(Object.values(state.fleets)[0]?.seq).toBe(1);
  });

  it('pinned mode keeps working beside it', () => {
    expect(bkv(['status', '--server', dev.url, '--trust', join(dir, 'trust.json'), '--user', 'alice']).code).toBe(0);
  });

  it('each pin alone changed: exit 7, its own code, and nothing sent to the fleet (I7)', async () => {
    const t0 = JSON.parse(readFileSync(trustPath, 'utf8')) as ValidatorTrustFile;
    const op = await impostor(t0.operator);
    const val = await impostor(t0.validator);
    const lk = await impostor(t0.log.key);
    const wk = await impostor(t0.witnesses.keys[0]!, 4);
    const cases: [string, (t: ValidatorTrustFile) => void][] = [
      ['BadOperatorSignature', (t) => (t.operator = op)],
      ['MissingValidatorSignature', (t) => (t.validator = val)],
      ['UnknownLogKey', (t) => (t.log.key = lk)],
      ['WrongLog', (t) => (t.log.origin = 'elsewhere.example/log')],
      ['MeasurementNotAllowed', (t) => (t.measurements = [`sha256:${'ab'.repeat(32)}`])],
      ['WitnessQuorum', (t) => (t.witnesses.keys = [wk])],
      ['SeqRegression', (t) => (t.minimum = { seq: 99 })],
    ];
    for (const [code, change] of cases) {
      const before = await relayed();
      const r = bkv(['status', ...conn('bob', trustWith(change), join(dir, `state-${code}.json`))]);
      expect(r.code, `${code}: ${r.stderr}`).toBe(7);
      expect(r.stderr).toContain(`(${code})`);
      expect(await relayed(), code).toBe(before);
    }
  });

  it('the audit tools read the log with the vkeys alone, and check the bundle', () => {
    const v = dev.processes.find((p) => p.role === 'validator')!;
    const log = bkv(['audit', 'log', '--log', v.url, '--vkeys', join(dir, 'validator-keys.txt'), '--evidence', '--state', join(dir, 'audit-state.json')]);
    expect(log.code, log.stdout + log.stderr).toBe(0);
    expect(log.stdout).toMatch(/seq 1: fleet [0-9a-f]{16} \(first statement\)/);
    const b = bkv(['audit', 'bundle', '--server', dev.url, '--trust-validator', trustPath]);
    expect(b.code, b.stderr).toBe(0);
    expect(b.stdout).toMatch(/^bundle OK: fleet [0-9a-f]{64} seq 1/);
  });

  it('after a restart (a renewed statement, seq 2), the client follows with a consistency proof', async () => {
    await dev.stop();
    dev = await startDev(dir, ['--validator']);
    const r = bkv(['recover', ...conn('alice'), '--password-stdin'], 'pw\n');
    expect(r.code, r.stderr).toBe(0);
    const state = JSON.parse(readFileSync(join(dir, 'client-state.json'), 'utf8')) as { fleets: Record<string, { seq: number }>; checkpoint: { size: number } };
    expect(Object.values(state.fleets)[0]?.seq).toBe(2);
    expect(state.checkpoint.size).toBe(2);
    const v = dev.processes.find((p) => p.role === 'validator')!;
    const log = bkv(['audit', 'log', '--log', v.url, '--vkeys', join(dir, 'validator-keys.txt'), '--state', join(dir, 'audit-state.json')]);
    expect(log.code, log.stdout).toBe(0);
    expect(log.stdout).toMatch(/seq 2: .*renewal, no key change/);
  }, 90_000);
});

/** Another key under the same name: it parses, but it is not the pinned party's. */
async function impostor(vkey: string, type = 1): Promise<string> {
  return (await newSignerKey(parseVerifierKey(vkey).name, new Uint8Array(randomBytes(32)), type)).verifierKey;
}
