/**
 * Fleet throughput (DESIGN section 5, issue 3): for fleets of 1, 3 and 5 members (quick: 1 and 3),
 * each a real `bkv dev --fleet N` (every HSM with its agent its own process, SQLite log):
 *  - committed guess-counter updates per second: clients send RecoverStart (KE1) only; each one
 *    the fleet answers is one guess-counter update in a committed log entry (the HSM releases a
 *    KE2 only once a majority certifies the entry). Entries/s and updates per entry come from
 *    the agents' /agent/v1/status stats (batches, requests) before and after;
 *  - end-to-end recoveries per second (KE1 + KE3, SDK → front end → leader → HSM → log);
 *  - p50/p99 latency of each;
 * and, in the same run, a 3-member etcd cluster (Debian etcd-server) on loopback, each member with
 * its own data dir (WAL fsynced), taking durable puts from the same number of concurrent clients
 * over its HTTP/JSON gateway. Targets (issue 3): fleet-of-3 updates/s ≥ etcd puts/s, and
 * recoveries/s with 3 members ≥ 0.8 × with 1.
 *
 * Everything shares this machine (the bench process is every client, its OPAQUE and HPKE work
 * included), so CPU use and the machine's load are reported with each result.
 * Run alone: `node dist/bench/fleet.js [--quick]` (after `npm run build`).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { httpTransport, type Transport } from '../src/client/transport.js';
import { Vault } from '../src/client/vault.js';
import { bytesEqual } from '../src/crypto/bytes.js';
import { sealRequest } from '../src/crypto/hpke.js';
import { clientStartLogin, opaqueReady, type KeyStretching } from '../src/crypto/opaque.js';
import { channelInfo, PROTOCOL_VERSION, requestAad, type RequestEnvelope } from '../src/protocol/channel.js';
import { parseTrustFile, type PinnedFleet } from '../src/protocol/fleet.js';
import { accountTag, routingHint } from '../src/protocol/ids.js';
import { decodeResponse, encodeRequest } from '../src/protocol/messages.js';
import { machineCpuMs, processCpuMs, startDevSystem, type DevSystem } from './dev-system.js';
import type { BenchResult } from './result.js';

const STRETCHING: KeyStretching = 'insecure-fast-for-tests-only';
const STRETCHING_NOTE = 'client key stretching argon2id m=8KiB t=1 p=1 (benchmark only)';
const PASSWORD = 'correct horse battery staple';
/** Guess limit of the users the KE1-only load spends guesses on (the most the policy allows). */
const KE1_USER_GUESSES = 255;
const ETCD_VALUE_BYTES = 256;

interface Settings {
  fleets: number[];
  concurrency: number;
  warmMs: number;
  phaseMs: number;
}

const QUICK: Settings = { fleets: [1, 3], concurrency: 16, warmMs: 1000, phaseMs: 3000 };
const FULL: Settings = { fleets: [1, 3, 5], concurrency: 16, warmMs: 2000, phaseMs: 10_000 };

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const round = (x: number, digits = 0): number => Math.round(x * 10 ** digits) / 10 ** digits;

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

// ---------------------------------------------------------------- measuring a phase

interface Cpu {
  bench: number;
  servers: number | null;
  machine: { busy: number; total: number } | null;
}

function cpuNow(serverPids: number[]): Cpu {
  const own = process.cpuUsage();
  let servers: number | null = 0;
  for (const pid of serverPids) {
    const ms = processCpuMs(pid);
    servers = ms === null || servers === null ? null : servers + ms;
  }
  return { bench: (own.user + own.system) / 1000, servers, machine: machineCpuMs() };
}

interface Phase {
  ops: number;
  wallMs: number;
  latencies: number[];
  errors: number;
  firstError?: string;
  cpu: Cpu;
  load1: number;
}

/**
 * Every worker runs `op` back to back: first for `warmMs` (not counted), then for `ms`.
 * `op` returns false for an operation that did not count (a refused one); those are errors.
 */
async function drive(workers: number, warmMs: number, ms: number, pids: number[], op: (w: number) => Promise<boolean>): Promise<Phase> {
  let counting = false;
  let stop = false;
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  const loops = Array.from({ length: workers }, async (_, w) => {
    while (!stop) {
      const t0 = performance.now();
      let ok: boolean;
      try {
        ok = await op(w);
      } catch (e) {
        ok = false;
        firstError ??= (e as Error).message;
        await sleep(50);
      }
      if (!counting) continue;
      if (ok) latencies.push(performance.now() - t0);
      else errors++;
    }
  });
  await sleep(warmMs);
  const load1 = loadavg()[0] ?? NaN;
  const cpu0 = cpuNow(pids);
  const t0 = performance.now();
  counting = true;
  await sleep(ms);
  counting = false;
  const wallMs = performance.now() - t0;
  const cpu1 = cpuNow(pids);
  stop = true;
  await Promise.all(loops);
  const cpu: Cpu = {
    bench: cpu1.bench - cpu0.bench,
    servers: cpu0.servers === null || cpu1.servers === null ? null : cpu1.servers - cpu0.servers,
    machine: cpu0.machine && cpu1.machine ? { busy: cpu1.machine.busy - cpu0.machine.busy, total: cpu1.machine.total - cpu0.machine.total } : null,
  };
  return { ops: latencies.length, wallMs, latencies: latencies.sort((a, b) => a - b), errors, ...(firstError ? { firstError } : {}), cpu, load1 };
}

/** Where the CPU went during a phase: this process (the clients), the servers, the rest of the machine. */
function cpuNote(p: Phase, servers: string): string {
  const cores = availableParallelism();
  const pct = (ms: number): number => round((ms / (p.wallMs * cores)) * 100, 1);
  const busy = p.cpu.machine && p.cpu.machine.total > 0 ? round((p.cpu.machine.busy / p.cpu.machine.total) * 100, 1) : null;
  const ours = p.cpu.servers === null ? null : pct(p.cpu.bench + p.cpu.servers);
  const other = busy === null || ours === null ? 'unknown' : `${round(Math.max(0, busy - ours), 1)}%`;
  const perOp = (ms: number): number => round(ms / Math.max(1, p.ops), 2);
  const cpuPerOp = `CPU per op: clients ${perOp(p.cpu.bench)} ms, servers ${p.cpu.servers === null ? 'unknown' : `${perOp(p.cpu.servers)} ms`}`;
  return `CPU of ${cores} cores: clients (bench process) ${pct(p.cpu.bench)}%, ${servers} ${p.cpu.servers === null ? 'unknown' : `${pct(p.cpu.servers)}%`}, other work on the machine ${other}, idle ${busy === null ? 'unknown' : `${round(100 - busy, 1)}%`}; ${cpuPerOp}; load average ${round(p.load1, 2)} at the start`;
}

function rateRows(name: string, p: Phase, what: string, cond: string, baseline?: { value: number; what: string }): BenchResult[] {
  const rate = p.ops / (p.wallMs / 1000);
  const c = `${p.ops} ${what} in ${round(p.wallMs)} ms${p.errors ? `, ${p.errors} failed${p.firstError ? ` (first: ${p.firstError})` : ''}` : ''}; ${cond}`;
  const base = baseline && baseline.value > 0 ? { baseline: round(baseline.value, 1), ratio: round(rate / baseline.value, 3) } : {};
  return [
    { name, unit: 'ops/s', value: round(rate, 1), ...base, conditions: `${baseline ? `baseline = ${baseline.what}; ` : ''}${c}` },
    { name: `${name}.p50`, unit: 'ms', value: round(percentile(p.latencies, 50), 1), conditions: c },
    { name: `${name}.p99`, unit: 'ms', value: round(percentile(p.latencies, 99), 1), conditions: c },
  ];
}

// ---------------------------------------------------------------- the fleet

interface AgentStats {
  batches: number;
  requests: number;
  /** ms the leader's agent spent in storage appends, and gathering statements and committing. */
  appendsMs: number;
  commitWaitMs: number;
}

const ZERO: AgentStats = { batches: 0, requests: 0, appendsMs: 0, commitWaitMs: 0 };

function statsDelta(a: AgentStats, b: AgentStats): AgentStats {
  return { batches: b.batches - a.batches, requests: b.requests - a.requests, appendsMs: b.appendsMs - a.appendsMs, commitWaitMs: b.commitWaitMs - a.commitWaitMs };
}

/** Summed over members: only a leader batches, and the leader may change. */
async function fleetStats(urls: string[]): Promise<AgentStats> {
  const all = await Promise.all(
    urls.map(async (u) => {
      const res = await fetch(`${u}/agent/v1/status`, { signal: AbortSignal.timeout(5000) });
      const s = ((await res.json()) as { stats?: Partial<AgentStats> }).stats ?? {};
      return { batches: s.batches ?? 0, requests: s.requests ?? 0, appendsMs: s.appendsMs ?? 0, commitWaitMs: s.commitWaitMs ?? 0 };
    }),
  );
  return all.reduce((a, b) => ({ batches: a.batches + b.batches, requests: a.requests + b.requests, appendsMs: a.appendsMs + b.appendsMs, commitWaitMs: a.commitWaitMs + b.commitWaitMs }), ZERO);
}

/** One client that only sends RecoverStart: each answer is one committed guess-counter update. */
class Ke1Client {
  private user = '';
  private left = 0;
  private serial = 0;
  private readonly vault: Vault;

  constructor(
    private readonly fleet: PinnedFleet,
    private readonly transport: Transport,
    private readonly name: string,
  ) {
    this.vault = new Vault({ fleet, transport, keyStretching: STRETCHING });
  }

  /** A fresh user with the largest guess budget, before the current one runs out (not timed as a KE1). */
  async nextUser(): Promise<void> {
    this.user = `${this.name}-${this.serial++}`;
    await this.vault.register(this.user, PASSWORD, { maxGuesses: KE1_USER_GUESSES });
    this.left = KE1_USER_GUESSES;
  }

  /** One KE1 sealed to the fleet, as the SDK does it; true when the fleet answered with a KE2. */
  async ke1(): Promise<boolean> {
    if (this.left <= 1) await this.nextUser();
    const userId = this.user;
    const req = { type: 'RecoverStart' as const, userId, ke1: clientStartLogin(PASSWORD).ke1 };
    const head = { version: PROTOCOL_VERSION, type: req.type, hint: routingHint(userId), tag: accountTag(userId) };
    const sealed = await sealRequest(this.fleet.keys.hpke, channelInfo(this.fleet.fleetId), requestAad(head), encodeRequest(req));
    const env: RequestEnvelope = { ...head, enc: sealed.enc, ciphertext: sealed.ciphertext };
    const reply = await this.transport.send(env);
    if (reply.type !== 'Sealed') return false;
    const res = decodeResponse(await sealed.openResponse(reply.body));
    if (res.type !== 'RecoverStart' || res.outcome !== 'Ok') {
      this.left = 0;
      return false;
    }
    this.left = res.guessesLeft;
    return true;
  }
}

interface FleetRun {
  n: number;
  ke1: Phase;
  entries: AgentStats;
  recover: Phase;
  recoverStats: AgentStats;
}

async function benchOneFleet(n: number, s: Settings, log: (l: string) => void): Promise<FleetRun> {
  const sys: DevSystem = await startDevSystem(['--fleet', String(n), '--ke1-per-day', '1000000000']);
  let ok = false;
  try {
    const fleet = parseTrustFile(sys.trust);
    const members = sys.processes.filter((p) => p.role === 'hsm');
    const urls = members.map((m) => m.url);
    const pids = sys.processes.map((p) => p.pid);
    const transport = httpTransport({ server: sys.frontendUrl });
    await opaqueReady;

    // Committed guess-counter updates: KE1s only.
    const ke1Clients = Array.from({ length: s.concurrency }, (_, i) => new Ke1Client(fleet, transport, `bench-ke1-n${n}-c${i}`));
    await Promise.all(ke1Clients.map((c) => c.nextUser()));
    const st0 = await fleetStats(urls);
    const ke1 = await drive(s.concurrency, s.warmMs, s.phaseMs, pids, (w) => ke1Clients[w]!.ke1());
    const st1 = await fleetStats(urls);
    // Stats cover the warm-up and the registrations too: scale entries to the counted window.
    const entries = statsDelta(st0, st1);
    log(`fleet of ${n}: ${ke1.ops} KE1s in ${round(ke1.wallMs)} ms`);

    // End-to-end recoveries: one user per client, right password, back to back.
    const users = await Promise.all(
      Array.from({ length: s.concurrency }, async (_, i) => {
        const vault = new Vault({ fleet, transport, keyStretching: STRETCHING });
        const id = `bench-rec-n${n}-c${i}`;
        const { key } = await vault.register(id, PASSWORD);
        return { vault, id, key };
      }),
    );
    const r0 = await fleetStats(urls);
    const recover = await drive(s.concurrency, s.warmMs, s.phaseMs, pids, async (w) => {
      const u = users[w]!;
      const { key } = await u.vault.recover(u.id, PASSWORD);
      if (!bytesEqual(key, u.key)) throw new Error(`recover ${u.id}: wrong key`);
      return true;
    });
    const r1 = await fleetStats(urls);
    log(`fleet of ${n}: ${recover.ops} recoveries in ${round(recover.wallMs)} ms`);
    ok = true;
    return { n, ke1, entries, recover, recoverStats: statsDelta(r0, r1) };
  } catch (e) {
    throw new Error(`fleet of ${n}: ${(e as Error).message} (bkv dev state and logs kept in ${sys.dir})`, { cause: e });
  } finally {
    await sys.stop({ keepDir: !ok });
  }
}

// ---------------------------------------------------------------- etcd

function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      srv.close(() => (typeof a === 'object' && a ? ok(a.port) : fail(new Error('no free port'))));
    });
  });
}

function etcdVersion(): string | null {
  const r = spawnSync('etcd', ['--version'], { encoding: 'utf8' });
  if (r.status !== 0) return null;
  return /etcd Version: (\S+)/.exec(r.stdout)?.[1] ?? 'unknown';
}

interface EtcdCluster {
  endpoints: string[];
  pids: number[];
  dir: string;
  stop(): Promise<void>;
}

/** Three etcd members on loopback, each its own process group and data dir; killed as groups. */
async function startEtcd(): Promise<EtcdCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'bkv-bench-etcd-'));
  const ports = await Promise.all(Array.from({ length: 6 }, () => freePort()));
  const peer = (i: number): string => `http://127.0.0.1:${ports[3 + i]}`;
  const client = (i: number): string => `http://127.0.0.1:${ports[i]}`;
  const cluster = [0, 1, 2].map((i) => `m${i}=${peer(i)}`).join(',');
  const children: ChildProcess[] = [];
  const kill = (): void => {
    for (const c of children) {
      try {
        if (c.pid !== undefined) process.kill(-c.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  };
  process.on('exit', kill);
  const stop = async (): Promise<void> => {
    kill();
    await Promise.all(children.map((c) => (c.exitCode !== null || c.signalCode !== null ? undefined : new Promise((r) => c.once('exit', r)))));
    process.off('exit', kill);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < 3; i++) {
      const out = openSync(join(dir, `m${i}.log`), 'a');
      const args = [
        '--name', `m${i}`, '--data-dir', join(dir, `m${i}`),
        '--listen-client-urls', client(i), '--advertise-client-urls', client(i),
        '--listen-peer-urls', peer(i), '--initial-advertise-peer-urls', peer(i),
        '--initial-cluster', cluster, '--initial-cluster-state', 'new', '--initial-cluster-token', `bkv-bench-${process.pid}`,
        '--logger', 'zap', '--log-level', 'error',
      ];
      const c = spawn('etcd', args, { detached: true, stdio: ['ignore', out, out] });
      children.push(c);
    }
    const endpoints = [0, 1, 2].map(client);
    const until = performance.now() + 30_000;
    for (;;) {
      const healthy = await Promise.all(
        endpoints.map(async (e) => {
          try {
            const res = await fetch(`${e}/health`, { signal: AbortSignal.timeout(1000) });
            return ((await res.json()) as { health?: string }).health === 'true';
          } catch {
            return false;
          }
        }),
      );
      if (healthy.every(Boolean)) break;
      if (performance.now() > until) throw new Error(`etcd cluster not healthy after 30 s: ${[0, 1, 2].map((i) => readFileSync(join(dir, `m${i}.log`), 'utf8').slice(-500)).join('\n')}`);
      await sleep(200);
    }
    return { endpoints, pids: children.map((c) => c.pid!), dir, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

async function benchEtcd(s: Settings): Promise<Phase> {
  const etcd = await startEtcd();
  try {
    const value = Buffer.alloc(ETCD_VALUE_BYTES, 7).toString('base64');
    let serial = 0;
    return await drive(s.concurrency, s.warmMs, s.phaseMs, etcd.pids, async (w) => {
      // Clients spread over the members, as etcd's client balancer does; followers forward to the leader.
      const endpoint = etcd.endpoints[w % etcd.endpoints.length]!;
      const key = Buffer.from(`bench/c${w}/${serial++ % 1000}`).toString('base64');
      const res = await fetch(`${endpoint}/v3/kv/put`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key, value }), signal: AbortSignal.timeout(10_000) });
      const body = (await res.json()) as { header?: { revision?: string } };
      return res.ok && body.header?.revision !== undefined;
    });
  } finally {
    await etcd.stop();
  }
}

// ---------------------------------------------------------------- results

/** Batch size, and where the leader's agent spends its time per entry. */
function perEntry(e: AgentStats): string {
  if (e.batches === 0) return 'no entries';
  return `${round(e.requests / e.batches, 2)} requests per entry, per entry ${round(e.appendsMs / e.batches, 1)} ms in the storage append and ${round(e.commitWaitMs / e.batches, 1)} ms persisting NVRAM, gathering statements and committing`;
}

function fleetRows(r: FleetRun, one: FleetRun | undefined, etcd: Phase | null, s: Settings, cond: string): BenchResult[] {
  const name = `fleet.n${r.n}`;
  const c = `fleet of ${r.n} (${r.n === 1 ? 'no peers' : `majority ${Math.floor(r.n / 2) + 1}`}), bkv dev on SQLite, ${s.concurrency} concurrent clients in this process; ${cond}`;
  const etcdRate = etcd ? etcd.ops / (etcd.wallMs / 1000) : 0;
  const ke1Base = r.n === 3 && etcd ? { value: etcdRate, what: 'etcd puts/s (3 members, same clients); target ratio ≥ 1' } : undefined;
  const recBase = r.n > 1 && one ? { value: one.recover.ops / (one.recover.wallMs / 1000), what: `recoveries/s with 1 member${r.n === 3 ? '; target ratio ≥ 0.8' : ''}` } : undefined;
  const e = r.entries;
  // The stats windows include warm-up: scale entries by the share of KE1 requests counted.
  const counted = e.requests > 0 ? Math.min(1, r.ke1.ops / e.requests) : 0;
  const entriesRate = (e.batches * counted) / (r.ke1.wallMs / 1000);
  const rs = r.recoverStats;
  return [
    ...rateRows(`${name}.guess-updates`, r.ke1, 'RecoverStarts answered (each one guess-counter update in a committed entry)', `${cpuNote(r.ke1, `${r.n} HSM+agent processes + front end + supervisor`)}; ${c}`, ke1Base),
    { name: `${name}.entries`, unit: 'entries/s', value: round(entriesRate, 1), conditions: `committed log entries (agent stats.batches) during the KE1-only load: ${perEntry(e)}; ${c}` },
    ...rateRows(`${name}.recover`, r.recover, 'recoveries (KE1 + KE3 round trips, key checked)', `${perEntry(rs)}; ${cpuNote(r.recover, `${r.n} HSM+agent processes + front end + supervisor`)}; ${STRETCHING_NOTE}; ${c}`, recBase),
  ];
}

function etcdRows(p: Phase, version: string, s: Settings, cond: string): BenchResult[] {
  return rateRows('fleet.etcd3.put', p, `etcd puts (${ETCD_VALUE_BYTES}-byte values, HTTP/JSON gateway /v3/kv/put, clients spread over the 3 members)`, `${cpuNote(p, '3 etcd processes')}; etcd ${version}, 3 members on loopback, own data dirs in ${tmpdir()}, WAL fsync on (default); ${s.concurrency} concurrent clients in this process; ${cond}`);
}

export async function benchFleet(opts: { quick: boolean }): Promise<BenchResult[]> {
  const s = opts.quick ? QUICK : FULL;
  const log = (l: string): void => console.log(`   ${l}`);
  const cond = `warm-up ${s.warmMs} ms, ${s.phaseMs} ms measured, node ${process.version}`;
  const runs: FleetRun[] = [];
  for (const n of s.fleets) runs.push(await benchOneFleet(n, s, log));
  const version = etcdVersion();
  let etcd: Phase | null = null;
  let etcdNote: BenchResult[] = [];
  if (version === null) {
    etcdNote = [{ name: 'fleet.etcd3.put', unit: 'ops/s', value: NaN, conditions: 'etcd is not installed (Debian: apt-get install etcd-server): no comparison' }];
  } else {
    etcd = await benchEtcd(s);
    log(`etcd: ${etcd.ops} puts in ${round(etcd.wallMs)} ms`);
  }
  const one = runs.find((r) => r.n === 1);
  return [...runs.flatMap((r) => fleetRows(r, one, etcd, s, cond)), ...(etcd ? etcdRows(etcd, version!, s, cond) : etcdNote)];
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const results = await benchFleet({ quick: process.argv.includes('--quick') });
  console.table(results.map((r) => ({ name: r.name, value: r.value, unit: r.unit, baseline: r.baseline ?? '', ratio: r.ratio ?? '' })));
  for (const r of results) console.log(`${r.name}: ${r.conditions}`);
}
