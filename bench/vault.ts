/**
 * Vault throughput (DESIGN sections 4-5): registrations and recoveries per second end to end,
 * SDK → HTTP front end → agent → HSM → SQLite log, against a real `bkv dev`, each set against the
 * raw bound, the same OPAQUE work done in process on one thread with no network, channel or log.
 *
 * Everything shares this machine: the bench process is the clients (their OPAQUE and HPKE work
 * included), so the CPU time of each process is measured per operation to show where time goes.
 * Run alone: `node dist/bench/vault.js [--quick]` (after `npm run build`).
 */
import { closeSync, fsyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { httpTransport } from '../src/client/transport.js';
import { Vault } from '../src/client/vault.js';
import { bytesEqual } from '../src/crypto/bytes.js';
import {
  clientFinishLogin,
  clientFinishRegistration,
  clientStartLogin,
  clientStartRegistration,
  createServerSetup,
  opaqueReady,
  serverFinishLogin,
  serverRegistrationResponse,
  serverStartLogin,
  type Identities,
  type KeyStretching,
} from '../src/crypto/opaque.js';
import { parseTrustFile, type PinnedFleet } from '../src/protocol/fleet.js';
import { machineCpuMs, processCpuMs, startDevSystem, type DevSystem } from './dev-system.js';
import type { BenchResult } from './result.js';

const STRETCHING: KeyStretching = 'insecure-fast-for-tests-only';
const STRETCHING_NOTE = 'client key stretching: argon2id m=8KiB t=1 p=1 (benchmark only; production floor m=64MiB t=3 p=4)';
const PASSWORD = 'correct horse battery staple';
const TRIALS = 5;

interface Settings {
  rawMs: number;
  phaseMs: number;
  concurrency: number[];
  fsyncSamples: number;
}

const QUICK: Settings = { rawMs: 1000, phaseMs: 2000, concurrency: [16], fsyncSamples: 20 };
const FULL: Settings = { rawMs: 5000, phaseMs: 10_000, concurrency: [8, 32], fsyncSamples: 100 };

// ---------------------------------------------------------------- raw bound, in process

interface Split {
  client: number;
  server: number;
}

interface RawRate {
  perS: number;
  best: number;
  clientMs: number;
  serverMs: number;
}

/** Runs `op` (which adds its client and server ms to a Split) in TRIALS trials; median rate. */
function measureRaw(ms: number, op: (split: Split) => void): RawRate {
  for (let i = 0; i < 20; i++) op({ client: 0, server: 0 });
  const trials: { rate: number; split: Split; n: number }[] = [];
  for (let t = 0; t < TRIALS; t++) {
    const split = { client: 0, server: 0 };
    const t0 = performance.now();
    let n = 0;
    while (performance.now() - t0 < ms / TRIALS) {
      op(split);
      n++;
    }
    trials.push({ rate: n / ((performance.now() - t0) / 1000), split, n });
  }
  trials.sort((a, b) => a.rate - b.rate);
  const mid = trials[Math.floor(TRIALS / 2)]!;
  return { perS: mid.rate, best: trials[TRIALS - 1]!.rate, clientMs: mid.split.client / mid.n, serverMs: mid.split.server / mid.n };
}

function timeInto<T>(split: Split, side: keyof Split, f: () => T): T {
  const t0 = performance.now();
  const r = f();
  split[side] += performance.now() - t0;
  return r;
}

const RAW_IDS: Identities = { client: 'bench-user', server: 'ab'.repeat(32) };
const RAW_CRED = 'bkv/v1/cred|bench-user|nonce';

function rawRegistration(setup: Uint8Array, split: Split): Uint8Array {
  const start = timeInto(split, 'client', () => clientStartRegistration(PASSWORD));
  const response = timeInto(split, 'server', () => serverRegistrationResponse(setup, RAW_CRED, start.request));
  return timeInto(split, 'client', () => clientFinishRegistration(PASSWORD, start.state, response, RAW_IDS, STRETCHING)).record;
}

function rawLogin(setup: Uint8Array, record: Uint8Array, split: Split): void {
  const start = timeInto(split, 'client', () => clientStartLogin(PASSWORD));
  const ke2 = timeInto(split, 'server', () => serverStartLogin(setup, RAW_CRED, record, start.ke1, RAW_IDS));
  const fin = timeInto(split, 'client', () => clientFinishLogin(PASSWORD, start.state, ke2.ke2, RAW_IDS, STRETCHING));
  if (!fin) throw new Error('raw login: the password did not open the envelope');
  const key = timeInto(split, 'server', () => serverFinishLogin(ke2.state, fin.ke3, RAW_IDS));
  if (!key || !bytesEqual(key, fin.sessionKey)) throw new Error('raw login: session keys differ');
}

async function rawBound(ms: number): Promise<{ login: RawRate; registration: RawRate }> {
  await opaqueReady;
  const setup = createServerSetup();
  const record = rawRegistration(setup, { client: 0, server: 0 });
  const login = measureRaw(ms, (split) => rawLogin(setup, record, split));
  const registration = measureRaw(ms, (split) => void rawRegistration(setup, split));
  return { login, registration };
}

/** Median ms of a durable 4 KiB write (write + fsync) in the directory that will hold the log. */
function fsyncMs(samples: number): number {
  const dir = mkdtempSync(join(tmpdir(), 'bkv-bench-fsync-'));
  try {
    const fd = openSync(join(dir, 'probe'), 'w');
    const page = new Uint8Array(4096).fill(7);
    const times: number[] = [];
    for (let i = 0; i < samples; i++) {
      const t0 = performance.now();
      writeSync(fd, page, 0, page.length, 0);
      fsyncSync(fd);
      times.push(performance.now() - t0);
    }
    closeSync(fd);
    return percentile(times.sort((a, b) => a - b), 50);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- end to end

type Op = 'register' | 'recover';

interface AgentStats {
  batches: number;
  requests: number;
  appendsMs: number;
}

interface CpuSample {
  bench: number;
  hsm: number | null;
  frontend: number | null;
  /** The whole machine, every process on it: busy and total CPU ms. */
  machine: { busy: number; total: number } | null;
}

/** Seconds the front end spent on relayed requests (its own latency histogram), all types. */
interface RelaySample {
  seconds: number;
  count: number;
}

interface PhaseResult {
  op: Op;
  concurrency: number;
  ops: number;
  wallMs: number;
  latencies: number[];
  cpuMs: CpuSample;
  agent: AgentStats;
  relay: RelaySample;
}

interface Client {
  vault: Vault;
  users: { id: string; key: Uint8Array }[];
}

async function agentStats(agentUrl: string): Promise<AgentStats> {
  const res = await fetch(`${agentUrl}/agent/v1/status`);
  const body = (await res.json()) as { stats?: Partial<AgentStats> };
  const s = body.stats ?? {};
  return { batches: s.batches ?? 0, requests: s.requests ?? 0, appendsMs: s.appendsMs ?? 0 };
}

/** Sums bkv_frontend_request_seconds_{sum,count} over request types from the front end's /metrics. */
async function relaySample(frontendUrl: string): Promise<RelaySample> {
  const text = await (await fetch(`${frontendUrl}/metrics`)).text();
  const total = (suffix: string): number =>
    text
      .split('\n')
      .filter((l) => l.startsWith(`bkv_frontend_request_seconds_${suffix}{`))
      .reduce((acc, l) => acc + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
  return { seconds: total('sum'), count: total('count') };
}

function pidOf(sys: DevSystem, role: string): number | undefined {
  return sys.processes.find((p) => p.role === role)?.pid;
}

function cpuSample(sys: DevSystem): CpuSample {
  const of = (role: string): number | null => {
    const pid = pidOf(sys, role);
    return pid === undefined ? null : processCpuMs(pid);
  };
  const own = process.cpuUsage();
  return { bench: (own.user + own.system) / 1000, hsm: of('hsm'), frontend: of('frontend'), machine: machineCpuMs() };
}

function cpuDelta(a: CpuSample, b: CpuSample): CpuSample {
  const d = (x: number | null, y: number | null): number | null => (x === null || y === null ? null : y - x);
  const machine = a.machine && b.machine ? { busy: b.machine.busy - a.machine.busy, total: b.machine.total - a.machine.total } : null;
  return { bench: b.bench - a.bench, hsm: d(a.hsm, b.hsm), frontend: d(a.frontend, b.frontend), machine };
}

/** One operation of client `c`, its i-th; checks what it gets back. */
async function runOp(op: Op, c: Client, name: string, i: number): Promise<void> {
  if (op === 'register') {
    const id = `${name}-${i}`;
    const { key } = await c.vault.register(id, PASSWORD);
    c.users.push({ id, key });
    return;
  }
  const user = c.users[i % c.users.length]!;
  const { key } = await c.vault.recover(user.id, PASSWORD);
  if (!bytesEqual(key, user.key)) throw new Error(`recover ${user.id}: wrong key`);
}

/** Every client runs `op` back to back until `ms` have passed; latencies in ms. */
async function drive(op: Op, clients: Client[], prefix: string, ms: number, from: number): Promise<{ latencies: number[]; ops: number; wallMs: number }> {
  const latencies: number[] = [];
  const t0 = performance.now();
  const until = t0 + ms;
  await Promise.all(
    clients.map(async (c, w) => {
      for (let i = from; performance.now() < until; i++) {
        const s = performance.now();
        await runOp(op, c, `${prefix}-w${w}`, i);
        latencies.push(performance.now() - s);
      }
    }),
  );
  return { latencies, ops: latencies.length, wallMs: performance.now() - t0 };
}

async function phase(sys: DevSystem, op: Op, clients: Client[], ms: number): Promise<PhaseResult> {
  const prefix = `bench-c${clients.length}`;
  // Warm-up, not counted: every client registers its first user (and opens its connections).
  if (op === 'register') await Promise.all(clients.map((c, w) => runOp(op, c, `${prefix}-w${w}`, 0)));
  const [stats0, relay0] = [await agentStats(sys.agentUrl), await relaySample(sys.frontendUrl)];
  const cpu0 = cpuSample(sys);
  const run = await drive(op, clients, prefix, ms, 1);
  const cpu = cpuDelta(cpu0, cpuSample(sys));
  const [stats1, relay1] = [await agentStats(sys.agentUrl), await relaySample(sys.frontendUrl)];
  const agent = { batches: stats1.batches - stats0.batches, requests: stats1.requests - stats0.requests, appendsMs: stats1.appendsMs - stats0.appendsMs };
  const relay = { seconds: relay1.seconds - relay0.seconds, count: relay1.count - relay0.count };
  return { op, concurrency: clients.length, ...run, cpuMs: cpu, agent, relay };
}

function makeClients(fleet: PinnedFleet, server: string, n: number): Client[] {
  return Array.from({ length: n }, () => ({ vault: new Vault({ fleet, transport: httpTransport({ server }), keyStretching: STRETCHING }), users: [] }));
}

async function endToEnd(s: Settings): Promise<PhaseResult[]> {
  const sys = await startDevSystem(['--ke1-per-day', '1000000000']);
  let ok = false;
  try {
    const fleet = parseTrustFile(sys.trust);
    const out: PhaseResult[] = [];
    for (const c of s.concurrency) {
      const clients = makeClients(fleet, sys.frontendUrl, c);
      out.push(await phase(sys, 'register', clients, s.phaseMs));
      out.push(await phase(sys, 'recover', clients, s.phaseMs));
    }
    ok = true;
    return out;
  } catch (e) {
    throw new Error(`${(e as Error).message} (bkv dev state and logs kept in ${sys.dir})`, { cause: e });
  } finally {
    await sys.stop({ keepDir: !ok });
  }
}

// ---------------------------------------------------------------- results

const round = (x: number, digits = 0): number => Math.round(x * 10 ** digits) / 10 ** digits;

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function rawResults(raw: { login: RawRate; registration: RawRate }, cond: string): BenchResult[] {
  const rows = (name: string, what: string, r: RawRate): BenchResult[] => [
    { name, unit: 'ops/s', value: round(r.perS), conditions: `${what}; median of ${TRIALS} trials (best ${round(r.best)}/s); ${cond}` },
    { name: `${name}.client-ms`, unit: 'ms/op', value: round(r.clientMs, 3), conditions: `client share of ${name}; ${cond}` },
    { name: `${name}.server-ms`, unit: 'ms/op', value: round(r.serverMs, 3), conditions: `server share of ${name}; ${cond}` },
  ];
  return [
    ...rows('vault.raw.opaque-login', 'in-process @serenity-kit/opaque full login: client startLogin + server startLogin + client finishLogin + server finishLogin', raw.login),
    ...rows('vault.raw.opaque-registration', 'in-process registration: client startRegistration + server createRegistrationResponse + client finishRegistration', raw.registration),
  ];
}

/** Percent of the whole machine (all cores) that `cpuMs` of CPU time is over the phase. */
function machinePercent(p: PhaseResult, cpuMs: number): number {
  return round((cpuMs / (p.wallMs * availableParallelism())) * 100, 1);
}

/** How much of the machine the bench process used, next to the servers and everything else. */
function shareRow(p: PhaseResult, name: string, cond: string): BenchResult {
  const { bench, hsm, frontend, machine } = p.cpuMs;
  const pct = (ms: number | null): string => (ms === null ? 'unknown' : `${machinePercent(p, ms)}%`);
  const ours = hsm === null || frontend === null ? null : bench + hsm + frontend;
  const busy = machine && machine.total > 0 ? round((machine.busy / machine.total) * 100, 1) : null;
  const rest = ours === null || busy === null ? 'other work and idle: unknown' : `other work on the machine ${round(Math.max(0, busy - machinePercent(p, ours)), 1)}%, idle ${round(100 - busy, 1)}%`;
  return {
    name: `${name}.cpu-share-bench`,
    unit: `% of ${availableParallelism()} cores`,
    value: machinePercent(p, bench),
    conditions: `CPU used over the phase: bench process (the clients) ${pct(bench)}, HSM + agent ${pct(hsm)}, front end ${pct(frontend)}; ${rest} (/proc/stat); ${cond}`,
  };
}

/** CPU ms per operation of each process, against the raw OPAQUE work of its side where it has one. */
function cpuRows(p: PhaseResult, name: string, raw: RawRate, cond: string): BenchResult[] {
  const row = (proc: string, ms: number | null, what: string, baseline?: { ms: number; side: string }): BenchResult[] => {
    if (ms === null) return [];
    const value = ms / p.ops;
    const base = baseline ? { baseline: round(baseline.ms, 3), ratio: round(value / baseline.ms, 2) } : {};
    const against = baseline ? `; baseline = raw OPAQUE ${baseline.side} ms/op` : '';
    return [{ name: `${name}.cpu-${proc}`, unit: 'ms/op', value: round(value, 3), ...base, conditions: `${what}; ${machinePercent(p, ms)}% of the machine${against}; ${cond}` }];
  };
  return [
    ...row('bench', p.cpuMs.bench, 'CPU of the bench process (all clients: OPAQUE, HPKE, SDK, HTTP client)', { ms: raw.clientMs, side: 'client' }),
    ...row('hsm', p.cpuMs.hsm, 'CPU of the HSM + agent process (OPAQUE server, HPKE, tree, MACs, SQLite, HTTP)', { ms: raw.serverMs, side: 'server' }),
    ...row('frontend', p.cpuMs.frontend, 'CPU of the front-end process (HTTP in, relay to the agent, checks, rate limits)'),
    shareRow(p, name, cond),
  ];
}

const REQUESTS_PER_OP = 2; // register: RegisterStart + RegisterFinish; recover: RecoverStart (KE1) + RecoverFinish (KE3)

/**
 * The mean latency of an operation, split at the front end: the time its handler spent on the
 * operation's requests (relay to the agent, the agent's queue, the HSM, the log append, back),
 * and the rest, spent in the client process (crypto, HTTP client, waiting for a CPU) and on the
 * way in and out of the front end.
 */
function latencySplit(p: PhaseResult, name: string, c: string): BenchResult[] {
  const mean = p.latencies.reduce((x, y) => x + y, 0) / p.ops;
  if (p.relay.count === 0) return [{ name: `${name}.mean`, unit: 'ms', value: round(mean, 1), conditions: c }];
  const server = (p.relay.seconds * 1000 * REQUESTS_PER_OP) / p.relay.count;
  return [
    { name: `${name}.mean`, unit: 'ms', value: round(mean, 1), conditions: c },
    { name: `${name}.mean-in-frontend`, unit: 'ms', value: round(server, 1), baseline: round(mean, 1), ratio: round(server / mean, 2), conditions: `mean time per operation inside the front end's handler (front end → agent → HSM → log append → back), from its /metrics histogram over ${p.relay.count} requests; baseline = mean latency, ratio = its share; the other ${round(mean - server, 1)} ms are client-side (crypto, HTTP, waiting for a CPU); ${c}` },
  ];
}

function batchRows(p: PhaseResult, name: string, cond: string): BenchResult[] {
  const a = p.agent;
  if (a.batches === 0) return [];
  const requests = REQUESTS_PER_OP * p.ops;
  const detail = `${requests} requests (${REQUESTS_PER_OP} per operation, counted here; the agent's stats.requests says ${a.requests}) in ${a.batches} batches over ${round(p.wallMs)} ms: one batch every ${round(p.wallMs / a.batches, 2)} ms`;
  return [
    { name: `${name}.batch-size`, unit: 'requests', value: round(requests / a.batches, 2), conditions: `agent stats: ${detail}; ${cond}` },
    { name: `${name}.append-ms`, unit: 'ms/batch', value: round(a.appendsMs / a.batches, 2), conditions: `SQLite appendEntry (WAL, synchronous=FULL) per batch; ${round((a.appendsMs / p.wallMs) * 100, 1)}% of the wall time; ${cond}` },
  ];
}

function phaseResults(p: PhaseResult, raw: { login: RawRate; registration: RawRate }, cond: string): BenchResult[] {
  const name = `vault.e2e.${p.op}.c${p.concurrency}`;
  const bound = p.op === 'recover' ? raw.login : raw.registration;
  const rate = p.ops / (p.wallMs / 1000);
  const sorted = [...p.latencies].sort((x, y) => x - y);
  const what = p.op === 'recover' ? 'recoveries (KE1 + KE3 round trips)' : 'registrations (start + finish round trips)';
  const c = `${p.concurrency} concurrent clients, each its own users, ${p.ops} ${what} in ${round(p.wallMs)} ms; ${cond}`;
  return [
    { name, unit: 'ops/s', value: round(rate, 1), baseline: round(bound.perS), ratio: round(rate / bound.perS, 3), conditions: `baseline = raw in-process ${p.op === 'recover' ? 'full logins' : 'registrations'}/s; ${c}` },
    { name: `${name}.p50`, unit: 'ms', value: round(percentile(sorted, 50), 1), conditions: c },
    { name: `${name}.p99`, unit: 'ms', value: round(percentile(sorted, 99), 1), conditions: c },
    ...latencySplit(p, name, c),
    ...cpuRows(p, name, bound, cond),
    ...batchRows(p, name, cond),
  ];
}

export async function benchVault(opts: { quick: boolean }): Promise<BenchResult[]> {
  const s = opts.quick ? QUICK : FULL;
  const cond = `${STRETCHING_NOTE}; node ${process.version}`;
  const raw = await rawBound(s.rawMs);
  const fsync = fsyncMs(s.fsyncSamples);
  const rawCond = `single thread, in process; ${cond}`;
  const e2eCond = `HTTP to a local bkv dev (1 software HSM, SQLite), clients in this process; ${cond}`;
  const phases = await endToEnd(s);
  const disk: BenchResult = { name: 'vault.disk.write+fsync', unit: 'ms', value: round(fsync, 2), conditions: `median of ${s.fsyncSamples} 4 KiB write + fsync in ${tmpdir()}, where bkv dev keeps its SQLite log and NVRAM; each log batch costs several of these` };
  return [...rawResults(raw, rawCond), disk, ...phases.flatMap((p) => phaseResults(p, raw, e2eCond))];
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const results = await benchVault({ quick: process.argv.includes('--quick') });
  console.table(results.map((r) => ({ name: r.name, value: r.value, unit: r.unit, baseline: r.baseline ?? '', ratio: r.ratio ?? '' })));
  for (const r of results) console.log(`${r.name}: ${r.conditions}`);
}
