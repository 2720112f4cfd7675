/**
 * The multi-process chaos engine (issue 3): a real `bkv dev --fleet N` (each HSM with its agent
 * its own OS process, real sockets, SQLite or PostgreSQL), clients using the SDK over HTTP, and
 * SIGKILLs.
 *
 * Schedule, in cycles: for a while, a random minority of members (the leader first, then the
 * leader in about 40% of kills) is SIGKILLed, one kill at a time once every member is back;
 * `bkv dev` restarts them. Then a majority outage: the supervisor is paused (SIGSTOP) so that it
 * restarts no one, a majority is SIGKILLed, and clients must get Unavailable or OutcomeUnknown,
 * never an answer; the supervisor is resumed and service must come back by itself.
 *
 * Throughout, several clients run registrations, recoveries with right and wrong passwords,
 * password changes, deletions and status reads, each on users of its own (a sequential model of
 * what the client was told), and all of them guess wrong passwords on shared "target" users with
 * a small guess limit. Afterwards, with every member back and caught up:
 *  - every acknowledged registration, password change and deletion is there: each user's state
 *    (status, then recovery with the possible passwords) is one the model allows;
 *  - no record answered more KE2s than its limit: for targets, KE2s received (a RecoverStart
 *    that reached finishLogin or WrongPassword) never exceed maxGuesses; for other users, KE2s
 *    since the last possible successful KE3 never do either;
 *  - no response was released, and no entry committed, while a majority was down;
 *  - no anomalies: no definitive answer contradicts what the same client was told before (an
 *    AlreadyRegistered for its own first registration, a StaleState with no concurrent change).
 *
 * The seed fixes every choice the engine makes (ops, users, passwords, victims, pauses); what
 * the processes do in between depends on timing, so outcomes vary between runs of one seed.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDevSystem, type DevSystem } from '../../bench/dev-system.js';
import { httpTransport, type Transport, type TransportReply } from '../../src/client/transport.js';
import { Vault, VaultError } from '../../src/client/vault.js';
import { bytesEqual } from '../../src/crypto/bytes.js';
import { ProtocolError } from '../../src/protocol/errors.js';
import type { RequestEnvelope } from '../../src/protocol/channel.js';
import { parseTrustFile, type PinnedFleet } from '../../src/protocol/fleet.js';
import { BKV } from '../helpers/dev.js';

export interface ChaosOptions {
  seed: number;
  /** Members of the fleet (at least 3). */
  fleet: number;
  /** Seconds of client load with minority kills, over all cycles (the outages come on top). */
  seconds: number;
  clients: number;
  /** Majority outages; each lasts outageMs. Default: one per ~120 s of chaos, at least one. */
  cycles?: number;
  outageMs?: number;
  /** Also run `bkv status` during an outage and expect exit 6 (takes ~30 s: the CLI's timeout). */
  cliDuringOutage?: boolean;
  /** Guess limit of the target users. */
  targetMaxGuesses?: number;
  /** SDK request timeout (the clients' patience). */
  clientTimeoutMs?: number;
  /** A postgres:// URL: run the fleet on PostgreSQL instead of SQLite. */
  storage?: string;
  log?: (line: string) => void;
}

export interface KillEvent {
  at: number;
  members: number[];
  leaderKilled: boolean;
  /** Leader kills: ms from the kill until a new leader committed a later entry (polled every 50 ms). */
  failoverMs?: number;
  /** Leader kills: ms from the kill until a client got a released (sealed) answer to a request sent after it. */
  clientFailoverMs?: number;
}

export interface OutageReport {
  members: number[];
  leaderKilled: boolean;
  ms: number;
  /** Outcomes of client requests answered during the outage, by code. */
  codes: Record<string, number>;
  messages: string[];
  /** ms from resuming the supervisor until a commit (polled) and until a client got an answer. */
  resumeMs?: number;
  clientResumeMs?: number;
  fleetStatusExit?: number;
  cli?: { exit: number; ms: number; stderr: string };
}

export interface ChaosReport {
  seed: number;
  fleet: number;
  storage: string;
  durationMs: number;
  ops: Record<string, Record<string, number>>;
  acknowledged: { registrations: number; passwordChanges: number; deletions: number; recoveries: number };
  users: { normal: number; frozen: number; targets: number; targetKe2: number; targetsLocked: number };
  kills: KillEvent[];
  outages: OutageReport[];
  /** Largest lag `/v1/fleet/status` reported for a member that had just come back. */
  maxReturnLag: number;
  /** ms, after the last fault, until every member was up with lag 0. */
  convergeMs: number;
  violations: string[];
  anomalies: string[];
  dir: string;
}

// ---------------------------------------------------------------- small tools

const now = (): number => performance.now();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** mulberry32: a small seeded PRNG. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function pick<T>(r: () => number, xs: readonly T[]): T {
  return xs[Math.floor(r() * xs.length)]!;
}

function shuffle<T>(r: () => number, xs: T[]): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

interface Processes {
  supervisor: number;
  members: { member: number; pid: number; url: string }[];
  frontend: string;
}

function readProcesses(dir: string): Processes {
  const j = JSON.parse(readFileSync(join(dir, 'processes.json'), 'utf8')) as { supervisor: number; processes: { role: string; member?: number; pid: number; url: string }[] };
  const members = j.processes.filter((p) => p.role === 'hsm').map((p) => ({ member: p.member!, pid: p.pid, url: p.url }));
  const fe = j.processes.find((p) => p.role === 'frontend');
  if (!fe) throw new Error('processes.json lists no front end');
  return { supervisor: j.supervisor, members, frontend: fe.url };
}

/** processes.json may be mid-rewrite: retry briefly. */
async function processes(dir: string): Promise<Processes> {
  for (let i = 0; ; i++) {
    try {
      return readProcesses(dir);
    } catch (e) {
      if (i >= 20) throw e;
      await sleep(25);
    }
  }
}

/** SIGKILL; a process that is already gone is fine. */
function sigkill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // exited meanwhile
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

interface AgentStatus {
  leader: boolean;
  active: boolean;
  halted: string | null;
  captured: number | null;
  committed: number | null;
}

async function agentStatus(url: string): Promise<AgentStatus | null> {
  try {
    const res = await fetch(`${url}/agent/v1/status`, { signal: AbortSignal.timeout(1500) });
    if (!res.ok) return null;
    const s = (await res.json()) as { leader?: boolean; active?: boolean; halted?: string | null; captured?: { index: number } | null; committed?: { index: number } | null };
    return { leader: s.leader === true, active: s.active === true, halted: s.halted ?? null, captured: s.captured?.index ?? null, committed: s.committed?.index ?? null };
  } catch {
    return null;
  }
}

interface FleetStatus {
  members: { index: number; reachable: boolean; leader: boolean; captured: number | null; lag: number | null; halted: string | null }[];
  leader: number | null;
  lastCommitted: number | null;
  up: number;
  majority: number;
}

async function fleetStatus(frontend: string): Promise<FleetStatus | null> {
  try {
    const res = await fetch(`${frontend}/v1/fleet/status`, { signal: AbortSignal.timeout(5000) });
    return res.ok ? ((await res.json()) as FleetStatus) : null;
  } catch {
    return null;
  }
}

function runCli(args: string[]): Promise<{ exit: number; ms: number; stdout: string; stderr: string }> {
  const t0 = now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BKV, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ exit: code ?? -1, ms: now() - t0, stdout, stderr });
    });
  });
}

// ---------------------------------------------------------------- what clients were told

/** Codes after which the request may or may not have been applied. */
const UNCERTAIN = new Set(['Unavailable', 'OutcomeUnknown', 'NotLeader', 'Halted', 'Internal', 'StaleProof', 'Exception']);

function codeOf(e: unknown): { code: string; message: string } {
  if (e instanceof VaultError || e instanceof ProtocolError) return { code: e.code, message: e.message };
  return { code: 'Exception', message: e instanceof Error ? e.message : String(e) };
}

/** A reply seen by a client: when its request left and when the answer came. */
interface ReplyEvent {
  type: string;
  sentAt: number;
  at: number;
  sealed: boolean;
  code?: string;
  message?: string;
}

/** Records every request of one client (its ops run one at a time) and every reply. */
class RecordingTransport implements Transport {
  current: ReplyEvent[] = [];
  constructor(
    private readonly inner: Transport,
    private readonly sink: (e: ReplyEvent) => void,
  ) {}

  async send(env: RequestEnvelope): Promise<TransportReply> {
    const sentAt = now();
    const r = await this.inner.send(env);
    const e: ReplyEvent = { type: env.type, sentAt, at: now(), sealed: r.type === 'Sealed', ...(r.type === 'Error' ? { code: r.code, message: r.message } : {}) };
    this.current.push(e);
    this.sink(e);
    return r;
  }
}

/** A user's possible states: 'none', 'tomb', or 'active:<password index>'. */
type State = string;

interface NormalUser {
  id: string;
  key: Uint8Array;
  maxGuesses: number;
  possible: Set<State>;
  /** Touched no more after an uncertain outcome: a request of it may still be in flight. */
  frozen: boolean;
  nextPassword: number;
  ke2SinceReset: number;
  registrations: number;
  history: string[];
  /** Answered something the model did not expect (see anomalies); verification says what the vault holds. */
  anomaly: boolean;
}

interface Target {
  id: string;
  maxGuesses: number;
  ke2: number;
  possiblySpent: number;
  locked: boolean;
}

const passwordOf = (u: { id: string }, i: number): string => `pw-${i}-${u.id}`;
const activeIndex = (s: State): number | undefined => (s.startsWith('active:') ? Number(s.slice(7)) : undefined);
const only = (u: NormalUser): State | undefined => (u.possible.size === 1 ? [...u.possible][0] : undefined);

interface Shared {
  stop: boolean;
  events: ReplyEvent[];
  ops: Record<string, Record<string, number>>;
  acked: ChaosReport['acknowledged'];
  targets: Target[];
  violations: string[];
  anomalies: string[];
  log: (line: string) => void;
}

class ChaosClient {
  readonly users: NormalUser[] = [];
  private readonly transport: RecordingTransport;
  private readonly vault: Vault;
  private readonly r: () => number;
  private serial = 0;

  constructor(
    readonly index: number,
    seed: number,
    fleet: PinnedFleet,
    server: string,
    timeoutMs: number,
    private readonly sh: Shared,
    private readonly targetMaxGuesses: number,
    private readonly runTag: string,
  ) {
    this.r = prng((seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0);
    this.transport = new RecordingTransport(httpTransport({ server, timeoutMs }), (e) => sh.events.push(e));
    this.vault = new Vault({ fleet, transport: this.transport, keyStretching: 'insecure-fast-for-tests-only' });
  }

  private count(op: string, code: string): void {
    const o = (this.sh.ops[op] ??= {});
    o[code] = (o[code] ?? 0) + 1;
  }

  /** Runs one SDK call; returns 'Ok' or the error code, and the requests it sent. */
  private async call<T>(op: string, f: () => Promise<T>): Promise<{ code: string; message: string; value?: T; sent: ReplyEvent[] }> {
    this.transport.current = [];
    let out: { code: string; message: string; value?: T };
    try {
      out = { code: 'Ok', message: '', value: await f() };
    } catch (e) {
      out = codeOf(e);
    }
    this.count(op, out.code);
    return { ...out, sent: this.transport.current };
  }

  private note(u: NormalUser, what: string): void {
    u.history.push(`${Math.round(now())}ms ${what} -> {${[...u.possible].join(',')}}${u.frozen ? ' frozen' : ''}`);
  }

  private violation(u: NormalUser, what: string): void {
    this.sh.violations.push(`${u.id}: ${what}; history: ${u.history.join(' | ')}`);
  }

  /** Counts the KE2s an op received (RecoverFinish sent, or a client-side WrongPassword) and possible resets. */
  private ke2s(u: NormalUser, res: { code: string; sent: ReplyEvent[] }, correctPassword: boolean): void {
    const finishes = res.sent.filter((e) => e.type === 'RecoverFinish');
    const received = finishes.length + (res.code === 'WrongPassword' && finishes.length === 0 ? 1 : 0);
    u.ke2SinceReset += received;
    if (u.ke2SinceReset > u.maxGuesses) this.violation(u, `received ${u.ke2SinceReset} KE2s since the last possible successful KE3, limit ${u.maxGuesses}`);
    // A RecoverFinish with the right password that was answered, or may have been applied: a (possible) reset.
    if (correctPassword && finishes.some((e) => e.sealed || UNCERTAIN.has(e.code ?? ''))) u.ke2SinceReset = 0;
  }

  private newUser(): NormalUser {
    const u: NormalUser = { id: `c${this.index}-u${this.users.length}-${this.runTag}`, key: new Uint8Array(randomBytes(32)), maxGuesses: 10, possible: new Set(['none']), frozen: false, nextPassword: 0, ke2SinceReset: 0, registrations: 0, history: [], anomaly: false };
    this.users.push(u);
    return u;
  }

  /** An outcome that may or may not have been applied: allow both states, and touch the user no more. */
  private uncertain(u: NormalUser, ifApplied: State | undefined, what: string): void {
    if (ifApplied) u.possible.add(ifApplied);
    u.frozen = true;
    this.note(u, what);
  }

  /** A definitive answer the model did not expect: reported, and the user is frozen with both states allowed. */
  private unexpected(u: NormalUser, ifApplied: State | undefined, what: string): void {
    this.sh.anomalies.push(`${Math.round(now())} ms, ${u.id}: ${what} (model: {${[...u.possible].join(',')}})`);
    u.anomaly = true;
    this.uncertain(u, ifApplied, what);
  }

  async register(u: NormalUser): Promise<void> {
    const p = u.nextPassword++;
    const res = await this.call('register', () => this.vault.register(u.id, passwordOf(u, p), { key: u.key, maxGuesses: u.maxGuesses }));
    const what = `register(p${p}) ${res.code}`;
    if (res.code === 'Ok') {
      u.possible = new Set([`active:${p}`]);
      u.ke2SinceReset = 0;
      u.registrations++;
      this.sh.acked.registrations++;
      this.note(u, what);
    } else if (res.code === 'RegistrationLimit' && u.possible.has('tomb')) {
      u.possible = new Set(['tomb']);
      this.note(u, what);
    } else if (UNCERTAIN.has(res.code)) {
      this.uncertain(u, res.sent.some((e) => e.type === 'RegisterFinish') ? `active:${p}` : undefined, what);
    } else {
      this.unexpected(u, res.sent.some((e) => e.type === 'RegisterFinish') ? `active:${p}` : undefined, `${what}: ${res.message}`);
    }
  }

  async recover(u: NormalUser, p: number): Promise<void> {
    const res = await this.call('recover', () => this.vault.recover(u.id, passwordOf(u, p)));
    const what = `recover(p${p}) ${res.code}`;
    this.ke2s(u, res, true);
    if (res.code === 'Ok') {
      if (!bytesEqual(res.value!.key, u.key)) this.violation(u, 'recovered a key that is not the registered one');
      this.sh.acked.recoveries++;
      u.ke2SinceReset = 0;
      this.note(u, what);
    } else if (UNCERTAIN.has(res.code)) {
      this.uncertain(u, undefined, what);
    } else if (res.code === 'WrongPassword' || res.code === 'NotRegistered' || res.code === 'Locked') {
      this.violation(u, `${what}: the acknowledged password p${p} no longer opens the record (${res.message})`);
      u.frozen = true;
    } else {
      this.unexpected(u, undefined, `${what}: ${res.message}`);
    }
  }

  async recoverWrong(u: NormalUser, p: number): Promise<void> {
    const res = await this.call('recover-wrong', () => this.vault.recover(u.id, `wrong-${this.r()}`));
    const what = `recover(wrong) ${res.code}`;
    this.ke2s(u, res, false);
    if (res.code === 'WrongPassword') this.note(u, what);
    else if (res.code === 'Ok') this.violation(u, 'a wrong password recovered the key');
    else if (UNCERTAIN.has(res.code)) this.uncertain(u, undefined, what);
    else if (res.code === 'Locked' && u.ke2SinceReset >= u.maxGuesses) {
      u.possible = new Set(['tomb']);
      this.note(u, what);
    } else this.unexpected(u, undefined, `${what} with p${p} current: ${res.message}`);
  }

  async changePassword(u: NormalUser, p: number): Promise<void> {
    const q = u.nextPassword++;
    const res = await this.call('change-password', () => this.vault.changePassword(u.id, passwordOf(u, p), passwordOf(u, q), { maxGuesses: u.maxGuesses }));
    const what = `change(p${p}->p${q}) ${res.code}`;
    this.ke2s(u, res, true);
    const finishSent = res.sent.some((e) => e.type === 'ChangePasswordFinish');
    if (res.code === 'Ok') {
      u.possible = new Set([`active:${q}`]);
      u.ke2SinceReset = 0;
      this.sh.acked.passwordChanges++;
      this.note(u, what);
    } else if (UNCERTAIN.has(res.code)) {
      this.uncertain(u, finishSent ? `active:${q}` : undefined, what);
    } else if (res.code === 'WrongPassword' || res.code === 'NotRegistered' || res.code === 'Locked') {
      this.violation(u, `${what}: the acknowledged password p${p} no longer opens the record (${res.message})`);
      u.frozen = true;
    } else {
      this.unexpected(u, finishSent ? `active:${q}` : undefined, `${what}: ${res.message}`);
    }
  }

  async delete(u: NormalUser, p: number): Promise<void> {
    const res = await this.call('delete', () => this.vault.delete(u.id, passwordOf(u, p)));
    const what = `delete(p${p}) ${res.code}`;
    this.ke2s(u, res, true);
    const deleteSent = res.sent.some((e) => e.type === 'Delete');
    if (res.code === 'Ok') {
      u.possible = new Set(['tomb']);
      this.sh.acked.deletions++;
      this.note(u, what);
    } else if (UNCERTAIN.has(res.code)) {
      this.uncertain(u, deleteSent ? 'tomb' : undefined, what);
    } else if (res.code === 'WrongPassword' || res.code === 'NotRegistered' || res.code === 'Locked') {
      this.violation(u, `${what}: the acknowledged password p${p} no longer opens the record (${res.message})`);
      u.frozen = true;
    } else {
      this.unexpected(u, deleteSent ? 'tomb' : undefined, `${what}: ${res.message}`);
    }
  }

  async status(u: NormalUser): Promise<void> {
    const res = await this.call('status', () => this.vault.status(u.id));
    if (res.code !== 'Ok') {
      if (!UNCERTAIN.has(res.code)) this.unexpected(u, undefined, `status ${res.code}: ${res.message}`);
      return; // a read: nothing to freeze for
    }
    const st = res.value!.state === 'tombstone' ? 'tomb' : res.value!.state;
    const want = only(u)!;
    if ((st === 'active') !== want.startsWith('active') || (st !== 'active' && st !== want)) this.violation(u, `status says ${st}, the client was told ${want}`);
  }

  async registerTarget(): Promise<void> {
    const id = `t${this.index}-${this.serial++}-${this.runTag}`;
    const res = await this.call('register-target', () => this.vault.register(id, `target-${id}`, { maxGuesses: this.targetMaxGuesses }));
    if (res.code === 'Ok') this.sh.targets.push({ id, maxGuesses: this.targetMaxGuesses, ke2: 0, possiblySpent: 0, locked: false });
  }

  /** A wrong guess at a shared target (other clients guess at it concurrently). */
  async attack(t: Target): Promise<void> {
    const res = await this.call('guess-target', () => this.vault.recover(t.id, `guess-${this.r()}`));
    if (res.code === 'WrongPassword') {
      t.ke2++;
      if (t.ke2 > t.maxGuesses) this.sh.violations.push(`target ${t.id}: clients received ${t.ke2} KE2s, limit ${t.maxGuesses}`);
    } else if (res.code === 'Locked') {
      t.locked = true;
    } else if (res.code === 'Ok') {
      this.sh.violations.push(`target ${t.id}: a wrong password recovered the key`);
    } else if (res.code === 'NotRegistered') {
      this.sh.violations.push(`target ${t.id}: its acknowledged registration is gone`);
    } else if (UNCERTAIN.has(res.code)) {
      t.possiblySpent++; // the guess may have been counted; no KE2 reached the client
    } else {
      this.sh.anomalies.push(`target ${t.id}: guess answered ${res.code}: ${res.message}`);
    }
  }

  /** One op, chosen by this client's seeded PRNG. */
  async step(): Promise<void> {
    const r = this.r;
    const live = this.users.filter((u) => !u.frozen && u.possible.size === 1);
    const targets = this.sh.targets.filter((t) => !t.locked);
    if (targets.length < 2 && r() < 0.3) return this.registerTarget();
    const x = r();
    if (x < 0.3 && targets.length > 0) return this.attack(pick(r, targets));
    if (live.length < 3 || x < 0.4) return this.register(this.newUser());
    const u = pick(r, live);
    const s = only(u)!;
    const p = activeIndex(s);
    if (p === undefined) {
      // none or tombstone: register again (after deletions, up to the re-registration limit), or read it.
      if (u.registrations <= 2 && r() < 0.5) return this.register(u);
      return this.status(u);
    }
    const y = r();
    if (y < 0.45) return this.recover(u, p);
    if (y < 0.6) return this.recoverWrong(u, p);
    if (y < 0.78) return this.changePassword(u, p);
    if (y < 0.88) return this.delete(u, p);
    return this.status(u);
  }

  async loop(): Promise<void> {
    while (!this.sh.stop) {
      const before = this.sh.events.length;
      await this.step();
      // An op that failed fast on an unavailable vault: do not spin.
      const last = this.sh.events[this.sh.events.length - 1];
      if (this.sh.events.length > before && last && !last.sealed && UNCERTAIN.has(last.code ?? '')) await sleep(100 + this.r() * 200);
    }
  }

  /** After the run: does the vault hold a state the model allows for each user? */
  async verify(u: NormalUser): Promise<void> {
    let st: string | undefined;
    for (let i = 0; i < 10 && st === undefined; i++) {
      const res = await this.call('verify-status', () => this.vault.status(u.id));
      if (res.code === 'Ok') st = res.value!.state === 'tombstone' ? 'tomb' : res.value!.state;
      else await sleep(500);
    }
    if (st === undefined) return this.violation(u, 'status never answered during verification');
    if (u.anomaly) this.sh.anomalies.push(`${u.id}: afterwards the vault says ${st}`);
    if (st !== 'active') {
      if (!u.possible.has(st)) this.violation(u, `the vault says ${st}; the client was told {${[...u.possible].join(',')}}`);
      return;
    }
    const candidates = [...u.possible].map(activeIndex).filter((p): p is number => p !== undefined);
    if (candidates.length === 0) return this.violation(u, `the vault says active; the client was told {${[...u.possible].join(',')}}`);
    for (const p of candidates) {
      for (let i = 0; i < 5; i++) {
        const res = await this.call('verify-recover', () => this.vault.recover(u.id, passwordOf(u, p)));
        if (res.code === 'Ok') {
          if (!bytesEqual(res.value!.key, u.key)) this.violation(u, 'verification recovered a key that is not the registered one');
          return;
        }
        if (!UNCERTAIN.has(res.code)) break;
        await sleep(500);
      }
    }
    this.violation(u, `the record is active but none of the passwords the client may have set (p${candidates.join(', p')}) opens it`);
  }
}

// ---------------------------------------------------------------- faults

class Faults {
  readonly kills: KillEvent[] = [];
  readonly outages: OutageReport[] = [];
  maxReturnLag = 0;
  private readonly resumedAt: number[] = [];
  private readonly r: () => number;

  constructor(
    private readonly sys: DevSystem,
    private readonly n: number,
    seed: number,
    private readonly sh: Shared,
  ) {
    this.r = prng((seed ^ 0x5bd1e995) >>> 0);
  }

  private async statuses(p: Processes): Promise<(AgentStatus | null)[]> {
    return Promise.all(p.members.map((m) => agentStatus(m.url)));
  }

  /** Every member in processes.json running, listening and active. */
  async waitAllUp(ms: number): Promise<boolean> {
    const until = now() + ms;
    while (now() < until) {
      const p = await processes(this.sys.dir);
      if (p.members.every((m) => alive(m.pid))) {
        const st = await this.statuses(p);
        if (st.every((s) => s?.active && !s.halted)) return true;
      }
      await sleep(100);
    }
    return false;
  }

  /** Waits for killed members to come back and records the lag the front end reports for them then. */
  private async watchReturn(members: number[], ms: number): Promise<void> {
    const until = now() + ms;
    const pending = new Set(members);
    const p0 = await processes(this.sys.dir);
    while (pending.size > 0 && now() < until) {
      const fs = await fleetStatus(p0.frontend);
      for (const m of fs?.members ?? []) {
        if (pending.has(m.index) && m.reachable) {
          this.maxReturnLag = Math.max(this.maxReturnLag, m.lag ?? 0);
          pending.delete(m.index);
        }
      }
      await sleep(100);
    }
  }

  /**
   * ms from `t0` until some member leads and has committed past `before`. A killed member counts
   * once it answers again: that is a new process (bkv dev restarts it), and it may win the lease
   * back before any other member's lease check sees it expire.
   */
  private async commitAfter(t0: number, before: number, ms: number): Promise<number | undefined> {
    const until = t0 + ms;
    while (now() < until) {
      const p = await processes(this.sys.dir);
      const st = await Promise.all(p.members.map((m) => agentStatus(m.url)));
      if (st.some((s) => s?.leader && (s.committed ?? -1) > before)) return now() - t0;
      await sleep(50);
    }
    return undefined;
  }

  private leaderOf(st: (AgentStatus | null)[]): number | undefined {
    const i = st.findIndex((s) => s?.leader);
    return i < 0 ? undefined : i;
  }

  /** Kills a random minority (sometimes the leader) again and again until `until`. */
  async minority(until: number): Promise<void> {
    const maxDown = Math.floor((this.n - 1) / 2);
    while (now() < until - 2000 && !this.sh.stop) {
      await sleep(800 + this.r() * 2500);
      if (!(await this.waitAllUp(30_000))) {
        this.sh.violations.push('a killed member did not come back within 30 s');
        return;
      }
      if (now() >= until - 1000) break;
      const p = await processes(this.sys.dir);
      const st = await this.statuses(p);
      const leader = this.leaderOf(st);
      const committed = Math.max(...st.map((s) => s?.committed ?? -1));
      const count = 1 + Math.floor(this.r() * maxDown);
      const wantLeader = this.kills.every((k) => !k.leaderKilled) || this.r() < 0.4;
      const others = shuffle(this.r, p.members.map((m) => m.member).filter((m) => m !== leader));
      const victims = wantLeader && leader !== undefined ? [leader, ...others.slice(0, count - 1)] : others.slice(0, count);
      const at = now();
      for (const v of victims) sigkill(p.members.find((m) => m.member === v)!.pid);
      const k: KillEvent = { at, members: victims, leaderKilled: leader !== undefined && victims.includes(leader) };
      this.kills.push(k);
      this.sh.log(`chaos: SIGKILL member${victims.length > 1 ? 's' : ''} ${victims.join(', ')}${k.leaderKilled ? ' (the leader)' : ''} at ${Math.round(at)} ms`);
      const back = this.watchReturn(victims, 40_000);
      if (k.leaderKilled) {
        const f = await this.commitAfter(at, committed, 30_000);
        if (f === undefined) this.sh.violations.push(`no commit within 30 s after killing leader ${leader}`);
        else k.failoverMs = Math.round(f);
        this.sh.log(`chaos: failover ${f === undefined ? 'not seen' : `${Math.round(f)} ms`}`);
      }
      await back;
    }
  }

  /** A majority down, the supervisor paused so that none returns; then back. */
  async majority(ms: number, cli: boolean): Promise<void> {
    if (!(await this.waitAllUp(30_000))) {
      this.sh.violations.push('members did not come back before the majority outage');
      return;
    }
    const p = await processes(this.sys.dir);
    const st = await this.statuses(p);
    const leader = this.leaderOf(st);
    const size = Math.floor(this.n / 2) + 1;
    const withLeader = this.r() < 0.5 && leader !== undefined;
    const others = shuffle(this.r, p.members.map((m) => m.member).filter((m) => m !== leader));
    const victims = withLeader ? [leader, ...others.slice(0, size - 1)] : others.slice(0, size);
    const o: OutageReport = { members: victims, leaderKilled: leader !== undefined && victims.includes(leader), ms: 0, codes: {}, messages: [] };
    this.outages.push(o);
    const survivors = p.members.filter((m) => !victims.includes(m.member));
    const committedNow = async (): Promise<number> => Math.max(-1, ...(await Promise.all(survivors.map((m) => agentStatus(m.url)))).map((s) => s?.committed ?? -1));
    let committedDuring: number | undefined;
    process.kill(p.supervisor, 'SIGSTOP');
    const t0 = now();
    try {
      for (const v of victims) sigkill(p.members.find((m) => m.member === v)!.pid);
      this.sh.log(`chaos: majority outage: SIGKILL members ${victims.join(', ')}${o.leaderKilled ? ' (leader among them)' : ''}; supervisor paused`);
      const probes: Promise<void>[] = [];
      probes.push(
        sleep(1000)
          .then(() => runCli(['fleet', 'status', '--server', p.frontend]))
          .then((r) => void (o.fleetStatusExit = r.exit)),
      );
      if (cli) {
        probes.push(
          sleep(500)
            .then(() => runCli(['status', '--server', p.frontend, '--trust', join(this.sys.dir, 'trust.json'), '--user', `cli-probe-${Math.floor(this.r() * 1e9)}`]))
            .then((r) => void (o.cli = { exit: r.exit, ms: Math.round(r.ms), stderr: r.stderr.trim() })),
        );
      }
      // Entries certified before the kill may still be committed in its first moments; none after.
      await sleep(Math.min(1000, ms));
      committedDuring = await committedNow();
      await sleep(Math.max(0, ms - 1000));
      await Promise.all(probes);
      const committedLater = await committedNow();
      if (committedLater > committedDuring) this.sh.violations.push(`the fleet committed entries ${committedDuring + 1}..${committedLater} while a majority was down`);
    } finally {
      process.kill(p.supervisor, 'SIGCONT');
    }
    const resumed = now();
    o.ms = Math.round(resumed - t0);
    this.sh.log(`chaos: supervisor resumed after ${o.ms} ms`);
    const f = await this.commitAfter(resumed, committedDuring ?? -1, 60_000);
    if (f === undefined) this.sh.violations.push('service did not resume within 60 s after the majority returned');
    else o.resumeMs = Math.round(f);
    // What clients were answered meanwhile (requests sent before the kill included); nothing sent
    // after the kill may be released while a majority is down.
    for (const e of this.sh.events) {
      if (e.at <= t0 || e.at >= resumed) continue;
      if (e.sealed) {
        if (e.sentAt >= t0 + 200) this.sh.violations.push(`a ${e.type} sent ${Math.round(e.sentAt - t0)} ms into the majority outage was answered at ${Math.round(e.at - t0)} ms, before the majority returned`);
        continue;
      }
      o.codes[e.code!] = (o.codes[e.code!] ?? 0) + 1;
      if (!o.messages.includes(`${e.code}: ${e.message}`)) o.messages.push(`${e.code}: ${e.message}`);
    }
    this.resumedAt.push(resumed);
  }

  /** After the run: when clients got answers again after each outage. */
  clientResume(): void {
    this.outages.forEach((o, i) => {
      const first = this.sh.events.find((e) => e.sealed && e.at >= this.resumedAt[i]!);
      if (first) o.clientResumeMs = Math.round(first.at - this.resumedAt[i]!);
    });
  }
}

// ---------------------------------------------------------------- the run

export async function runChaos(opts: ChaosOptions): Promise<ChaosReport> {
  if (opts.fleet < 3) throw new Error('chaos needs a fleet of at least 3');
  const log = opts.log ?? ((l: string) => console.log(l));
  const cycles = opts.cycles ?? Math.max(1, Math.round(opts.seconds / 120));
  const outageMs = opts.outageMs ?? (opts.cliDuringOutage ? 36_000 : 10_000);
  const t0 = now();
  const sys = await startDevSystem(['--fleet', String(opts.fleet), '--ke1-per-day', '1000000000', ...(opts.storage ? ['--storage', opts.storage] : [])]);
  let keep = true;
  try {
    log(`chaos: seed ${opts.seed}, fleet of ${opts.fleet} on ${opts.storage ? 'PostgreSQL' : 'SQLite'}, ${opts.clients} clients, ${opts.seconds} s in ${cycles} cycle(s); state in ${sys.dir}`);
    const fleet = parseTrustFile(sys.trust);
    const frontend = (await processes(sys.dir)).frontend;
    const sh: Shared = { stop: false, events: [], ops: {}, acked: { registrations: 0, passwordChanges: 0, deletions: 0, recoveries: 0 }, targets: [], violations: [], anomalies: [], log };
    const runTag = `s${opts.seed}`;
    const clients = Array.from({ length: opts.clients }, (_, i) => new ChaosClient(i, opts.seed, fleet, frontend, opts.clientTimeoutMs ?? 8000, sh, opts.targetMaxGuesses ?? 4, runTag));
    const faults = new Faults(sys, opts.fleet, opts.seed, sh);
    const loops = clients.map((c) => c.loop());
    const perCycle = (opts.seconds * 1000) / cycles;
    for (let c = 0; c < cycles; c++) {
      await faults.minority(now() + perCycle);
      await faults.majority(outageMs, opts.cliDuringOutage === true);
    }
    // Service must be back by itself: let the clients run a little longer.
    const resumedAt = now();
    await sleep(4000);
    sh.stop = true;
    await Promise.all(loops);
    if (!sh.events.some((e) => e.sealed && e.sentAt >= resumedAt)) sh.violations.push('no client request succeeded after the last outage');
    faults.clientResume();

    // Every member back, caught up, and reported so.
    const c0 = now();
    let convergeMs = -1;
    while (now() - c0 < 60_000) {
      const fs = await fleetStatus(frontend);
      if (fs && fs.up === opts.fleet && fs.leader !== null && fs.members.every((m) => m.reachable && !m.halted && m.lag === 0)) {
        convergeMs = Math.round(now() - c0);
        break;
      }
      await sleep(200);
    }
    if (convergeMs < 0) sh.violations.push(`members did not all come back with lag 0 within 60 s: ${JSON.stringify(await fleetStatus(frontend))}`);
    await sleep(1000); // requests abandoned by clients are answered or dropped by now

    // Verification: each client checks its own users; targets are checked by status.
    await Promise.all(clients.map(async (c) => {
      for (const u of c.users) await c.verify(u);
    }));
    const checker = new Vault({ fleet, transport: httpTransport({ server: frontend }), keyStretching: 'insecure-fast-for-tests-only' });
    for (const t of sh.targets) {
      let s: Awaited<ReturnType<Vault['status']>> | undefined;
      for (let i = 0; i < 10 && !s; i++) s = await checker.status(t.id).catch(() => sleep(500).then(() => undefined));
      if (!s) sh.violations.push(`target ${t.id}: status never answered`);
      else if (s.state === 'none') sh.violations.push(`target ${t.id}: its acknowledged registration is gone`);
      else if (s.state === 'active' && s.guessesLeft > t.maxGuesses - t.ke2) sh.violations.push(`target ${t.id}: ${s.guessesLeft} guesses left after clients received ${t.ke2} KE2s (limit ${t.maxGuesses}): a released guess was not counted`);
    }

    const users = clients.flatMap((c) => c.users);
    const report: ChaosReport = {
      seed: opts.seed,
      fleet: opts.fleet,
      storage: opts.storage ? 'postgres' : 'sqlite',
      durationMs: Math.round(now() - t0),
      ops: sh.ops,
      acknowledged: sh.acked,
      users: { normal: users.length, frozen: users.filter((u) => u.frozen).length, targets: sh.targets.length, targetKe2: sh.targets.reduce((a, t) => a + t.ke2, 0), targetsLocked: sh.targets.filter((t) => t.locked).length },
      kills: faults.kills.map((k) => {
        if (!k.leaderKilled) return k;
        const first = sh.events.find((e) => e.sealed && e.sentAt > k.at);
        return first ? { ...k, clientFailoverMs: Math.round(first.at - k.at) } : k;
      }),
      outages: faults.outages,
      maxReturnLag: faults.maxReturnLag,
      convergeMs,
      violations: sh.violations,
      anomalies: sh.anomalies,
      dir: sys.dir,
    };
    keep = report.violations.length > 0 || report.anomalies.length > 0;
    return report;
  } finally {
    await sys.stop({ keepDir: keep });
  }
}

/** A human summary of a report. */
export function summarize(r: ChaosReport): string {
  const failovers = r.kills.filter((k) => k.failoverMs !== undefined).map((k) => k.failoverMs!);
  const clientFailovers = r.kills.filter((k) => k.clientFailoverMs !== undefined).map((k) => k.clientFailoverMs!);
  const lines = [
    `chaos seed ${r.seed}: fleet of ${r.fleet} on ${r.storage}, ${Math.round(r.durationMs / 1000)} s`,
    `  ops: ${Object.entries(r.ops).map(([op, c]) => `${op} ${Object.entries(c).map(([k, v]) => `${k}=${v}`).join(' ')}`).join('; ')}`,
    `  acknowledged and verified: ${r.acknowledged.registrations} registrations, ${r.acknowledged.passwordChanges} password changes, ${r.acknowledged.deletions} deletions, ${r.acknowledged.recoveries} recoveries; ${r.users.normal} users (${r.users.frozen} left with an uncertain outcome)`,
    `  targets: ${r.users.targets} (${r.users.targetsLocked} locked), ${r.users.targetKe2} KE2s received in all`,
    `  kills: ${r.kills.length} (${r.kills.filter((k) => k.leaderKilled).length} of the leader); failover (kill → next commit) ms: ${failovers.join(', ') || '-'}${failovers.length ? ` (p50 ${percentile(failovers, 50)}, max ${Math.max(...failovers)})` : ''}; to a client's answer: ${clientFailovers.join(', ') || '-'}`,
    ...r.outages.map((o) => `  majority outage: members ${o.members.join(', ')}${o.leaderKilled ? ' (with the leader)' : ''} down ${o.ms} ms; answers then: ${JSON.stringify(o.codes)}; messages: ${o.messages.join(' / ') || '-'}; bkv fleet status exit ${o.fleetStatusExit ?? '-'}${o.cli ? `; bkv status exit ${o.cli.exit} after ${o.cli.ms} ms: ${o.cli.stderr}` : ''}; resumed: commit after ${o.resumeMs ?? '-'} ms, client answer after ${o.clientResumeMs ?? '-'} ms`),
    `  returning members: largest lag reported ${r.maxReturnLag}; all caught up ${r.convergeMs} ms after the last fault`,
    `  anomalies: ${r.anomalies.length}${r.anomalies.length ? `\n    ${r.anomalies.slice(0, 20).join('\n    ')}` : ''}`,
    `  violations: ${r.violations.length}${r.violations.length ? `\n    ${r.violations.slice(0, 20).join('\n    ')}` : ''}`,
    ...(r.violations.length || r.anomalies.length ? [`  state and logs kept in ${r.dir}`] : []),
  ];
  return lines.join('\n');
}
