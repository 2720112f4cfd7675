/**
 * Bundle mode throughput (DESIGN section 6): bundle verifications per second on the client (every
 * check, Ed25519 through WebCrypto), and the validator's audit log at 10^5 entries (10^4 quick):
 * durable appends, whole submissions (checks, signature, append, checkpoint cosigned by two
 * in-process witnesses), and inclusion proofs served (tlog-proof text against the published
 * checkpoint, read from the SQLite tiles). Run alone: `node dist/bench/bundle.js [--quick]`.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import pino from 'pino';
import { utf8 } from '../src/crypto/bytes.js';
import { sha256 } from '../src/crypto/sha256.js';
import { opaqueReady } from '../src/crypto/opaque.js';
import { memoryStateStore, verifyBundle, type ValidatorTrust } from '../src/client/bundle.js';
import { HsmCore } from '../src/hsm/core.js';
import type { Platform } from '../src/hsm/platform.js';
import { parseSignedStatement } from '../src/protocol/statement.js';
import { SIGNATURE_TYPE_COSIGNATURE_V1, newSignerKey, parseSignerKey, type SignerKey } from '../src/protocol/tlog/index.js';
import { assembleBundle, buildSignedStatement, type Deployment } from '../src/validator/publish.js';
import { Validator } from '../src/validator/validator.js';
import { Witness } from '../src/witness/witness.js';
import type { BenchResult } from './result.js';

const DAY = 86400;

function memoryPlatform(): Platform {
  let secrets: Uint8Array | null = null;
  const slots: [Uint8Array | null, Uint8Array | null] = [null, null];
  return {
    randomBytes: (n) => new Uint8Array(randomBytes(n)),
    now: () => Date.now(),
    nvram: { read: (s) => slots[s], write: (s, d) => void (slots[s] = d.slice()) },
    secrets: { read: () => secrets, write: (d) => void (secrets = d.slice()) },
  };
}

async function signer(name: string, type = 1, clock?: () => number): Promise<SignerKey> {
  const { signerKey } = await newSignerKey(name, new Uint8Array(randomBytes(32)), type);
  return parseSignerKey(signerKey, clock ? { clock } : {});
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}

async function rate(seconds: number, minOps: number, op: () => Promise<void> | void): Promise<{ perSecond: number; ops: number }> {
  const t0 = performance.now();
  let ops = 0;
  while (ops < minOps || performance.now() - t0 < seconds * 1000) {
    await op();
    ops++;
  }
  return { perSecond: (ops * 1000) / (performance.now() - t0), ops };
}

export async function benchBundle(opts: { quick: boolean }): Promise<BenchResult[]> {
  await opaqueReady;
  const entries = opts.quick ? 10_000 : 100_000;
  const seconds = opts.quick ? 1 : 3;
  const dir = mkdtempSync(join(tmpdir(), 'bkv-bench-bundle-'));
  const clock = (): number => Math.floor(Date.now() / 1000);
  const origin = 'bench.example/log';
  const operator = await signer('bench.example/operator');
  const logKey = await signer(origin);
  const attestationKey = await signer('bench.example/attestation');
  const witnessKeys = await Promise.all([0, 1].map((i) => signer(`w${i}.example/w`, SIGNATURE_TYPE_COSIGNATURE_V1, clock)));
  const witnesses = witnessKeys.map((k) => new Witness(new Database(':memory:'), k, [{ origin, keys: [logKey.verifier] }], clock));
  // The witnesses in-process: what is measured is the log, not the loopback network.
  const fetchStub = (async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const i = Number(/witness(\d)/.exec(String(input))![1]);
    const r = await witnesses[i]!.addCheckpoint(String(init?.body ?? ''));
    if (r.type === 'Cosigned') return new Response(r.body, { status: 200 });
    if (r.type === 'Conflict') return new Response(`${r.latestSize}\n`, { status: 409 });
    return new Response(r.type, { status: 400 });
  }) as typeof fetch;
  const measurement = sha256(utf8('bench build'));
  const validator = new Validator({
    dbPath: join(dir, 'validator.sqlite'),
    origin,
    logKey,
    attestationKey,
    operator: operator.verifier,
    policy: { maxWindowSeconds: 30 * DAY, measurements: [measurement] },
    witnesses: witnessKeys.map((k, i) => ({ url: `http://witness${i}`, key: k.verifier })),
    quorum: 2,
    clock,
    log: pino({ level: 'silent' }),
    fetch: fetchStub,
  });
  try {
    const hsm = HsmCore.boot(memoryPlatform());
    const created = hsm.createFleet({});
    if (created.type !== 'Created') throw new Error('no fleet');
    const config = hsm.fleetConfig()!;
    const deployment: Deployment = { keys: created.publicKeys, routes: config.routes, members: config.members.map((id) => ({ id })), policy: { defaultMaxGuesses: 10, reRegistrationLimit: 2, quorum: 1 } };
    const submitOne = async () => {
      const head = validator.chainHead();
      const now = clock();
      const s = await buildSignedStatement(operator, { deployment, measurement, ...(head ? { previous: { seq: head.seq, entry: head.entry } } : {}), notBefore: now - 60, notAfter: now + 29 * DAY });
      return validator.submit(s.note, s.evidence);
    };

    // The log at its size: filler entries (the size is what matters for tiles and proofs).
    const t0 = performance.now();
    const filler = Array.from({ length: 1000 }, (_, i) => utf8(`filler entry ${i} ${'x'.repeat(700)}`));
    for (let n = 0; n < entries; n += filler.length) validator.tiles.appendBatch(filler.slice(0, Math.min(filler.length, entries - n)));
    const fillRate = (entries * 1000) / (performance.now() - t0);
    await validator.publish(true);

    const submitted = await submitOne();
    const s = parseSignedStatement(submitted.entry);
    const c = hsm.countersign(s.text, s.validatorSignature!);
    if (c.type !== 'Countersigned') throw new Error(c.type);
    const bundle = assembleBundle(submitted, c.signature);
    const trust: ValidatorTrust = {
      validator: attestationKey.verifier,
      log: { origin, key: logKey.verifier },
      witnesses: witnessKeys.map((k) => k.verifier),
      quorum: 2,
      operator: operator.verifier,
      measurements: [measurement],
      minimum: { seq: 0 },
    };
    const store = memoryStateStore();
    const verify = await rate(seconds, 20, async () => {
      await verifyBundle(bundle, trust, store, { now: clock() });
    });
    // The bound: the six Ed25519 verifications alone, concurrently, as verifyBundle issues them.
    const text = utf8(s.text);
    const opSig = s.operatorSignature.signature;
    const bound = await rate(seconds, 20, async () => {
      await Promise.all([0, 1, 2, 3, 4, 5].map(() => operator.verifier.verify(text, opSig)));
    });

    // A durable append alone: one entry, one SQLite transaction with synchronous=FULL.
    const entry = utf8(submitted.entry);
    const appends = await rate(seconds, 20, () => {
      validator.tiles.appendBatch([entry]);
    });
    const submissions = await rate(seconds, 10, async () => {
      await submitOne();
    });
    const size = validator.latest()!.size;
    const proofs = await rate(seconds, 200, () => {
      if (!validator.proof(Math.floor(Math.random() * size))) throw new Error('no proof');
    });
    const cond = `${size.toLocaleString('en')} entries in the log (statements ~1 KB), SQLite WAL synchronous=FULL, 2 in-process witnesses, quorum 2`;
    return [
      { name: 'bundle.verify', unit: 'verifications/s', value: round(verify.perSecond), baseline: round(bound.perSecond), ratio: round(verify.perSecond / bound.perSecond), conditions: `baseline: the 6 Ed25519 verifications alone, concurrent; every client check of DESIGN 6: 6 Ed25519 verifications (WebCrypto), inclusion proof of ${bundle.tlogProof.proof.length} nodes, state load and save in memory; ${verify.ops} runs` },
      { name: 'bundle.log-append', unit: 'appends/s', value: round(appends.perSecond), conditions: `one durable transaction per append (tiles updated); ${cond}` },
      { name: 'bundle.log-submit', unit: 'statements/s', value: round(submissions.perSecond), conditions: `whole submission: checks, attestation signature, durable append, checkpoint signed and cosigned; ${cond}` },
      { name: 'bundle.inclusion-proof', unit: 'proofs/s', value: round(proofs.perSecond), conditions: `tlog-proof of a random entry against the published checkpoint, tiles read from SQLite; ${cond}` },
      { name: 'bundle.log-fill', unit: 'entries/s', value: round(fillRate), conditions: `1000 entries per transaction while filling the log to ${entries.toLocaleString('en')}` },
    ];
  } finally {
    await validator.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const results = await benchBundle({ quick: process.argv.includes('--quick') });
  console.table(results.map((r) => ({ name: r.name, value: r.value, unit: r.unit, baseline: r.baseline ?? '', ratio: r.ratio ?? '' })));
  for (const r of results) console.log(`  ${r.name}: ${r.conditions}`);
}
