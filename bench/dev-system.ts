/**
 * A real `bkv dev` system for the end-to-end benchmark: started as its own process group in a
 * fresh temporary directory, and always stopped as a group (also on error, Ctrl-C or exit), so a
 * benchmark never leaves processes running.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

// The built CLI: beside this file in dist/bench/, or, when this file runs as TypeScript (vitest:
// the chaos test), from dist/ at the repository root.
const MAIN = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? '../dist/src/cli/main.js' : '../src/cli/main.js', import.meta.url));
const START_TIMEOUT_MS = 30_000;
const CLOCK_TICKS_PER_S = 100; // USER_HZ of /proc/<pid>/stat on Linux

export interface DevProcess {
  role: string;
  pid: number;
  url: string;
}

export interface DevSystem {
  dir: string;
  trust: unknown;
  frontendUrl: string;
  agentUrl: string;
  processes: DevProcess[];
  stop(opts?: { keepDir?: boolean }): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Fields of /proc/<pid>/stat after the command name: [state, ppid, pgrp, ...]. */
function procStat(pid: number): string[] | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** CPU time (user + system, all threads) a process has used, in ms; null where /proc is missing. */
export function processCpuMs(pid: number): number | null {
  const f = procStat(pid);
  if (!f) return null;
  return ((Number(f[11]) + Number(f[12])) * 1000) / CLOCK_TICKS_PER_S;
}

/** Busy and total CPU time of the whole machine so far, in ms (from /proc/stat); null where missing. */
export function machineCpuMs(): { busy: number; total: number } | null {
  let line: string | undefined;
  try {
    line = readFileSync('/proc/stat', 'utf8').split('\n')[0];
  } catch {
    return null;
  }
  if (!line?.startsWith('cpu ')) return null;
  const f = line.trim().split(/\s+/).slice(1, 9).map(Number); // user nice system idle iowait irq softirq steal
  const total = f.reduce((a, b) => a + b, 0);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  return { busy: ((total - idle) * 1000) / CLOCK_TICKS_PER_S, total: (total * 1000) / CLOCK_TICKS_PER_S };
}

/** Whether any process of the group is still running (zombies waiting to be reaped do not count). */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  if (!existsSync('/proc/self/stat')) return true;
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const f = procStat(Number(name));
    if (f && Number(f[2]) === pgid && f[0] !== 'Z') return true;
  }
  return false;
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // already gone
  }
}

async function waitGone(pgid: number, ms: number): Promise<boolean> {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    if (!groupAlive(pgid)) return true;
    await sleep(50);
  }
  return !groupAlive(pgid);
}

/** Kills the group on exit or Ctrl-C of this process; returns a function that removes the guard. */
function guardGroup(pgid: number): () => void {
  const onExit = (): void => signalGroup(pgid, 'SIGKILL');
  const onSignal = (signal: NodeJS.Signals): void => {
    signalGroup(pgid, 'SIGKILL');
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  process.on('exit', onExit);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return () => {
    process.off('exit', onExit);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
}

function readJson(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    return undefined; // not there yet, or half written
  }
}

function parseProcesses(json: unknown): DevProcess[] | null {
  const list = (json as { processes?: unknown } | undefined)?.processes;
  if (!Array.isArray(list)) return null;
  return list.map((p: { role?: unknown; pid?: unknown; url?: unknown }) => ({ role: String(p.role), pid: Number(p.pid), url: String(p.url) }));
}

/** Polls for DIR/processes.json, which `bkv dev` writes once every process is ready. */
async function waitReady(dir: string, child: ChildProcess, stderr: () => string): Promise<DevProcess[]> {
  const until = performance.now() + START_TIMEOUT_MS;
  while (performance.now() < until) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`bkv dev exited (code ${child.exitCode}, signal ${child.signalCode}) before it was ready: ${stderr().trim()}`);
    }
    const processes = parseProcesses(readJson(join(dir, 'processes.json')));
    if (processes) return processes;
    await sleep(100);
  }
  throw new Error(`bkv dev was not ready after ${START_TIMEOUT_MS} ms (logs: ${join(dir, 'logs')})`);
}

function urlOf(processes: DevProcess[], role: string): string {
  const p = processes.find((x) => x.role === role);
  if (!p) throw new Error(`bkv dev: no ${role} process in processes.json`);
  return p.url;
}

/** Starts `bkv dev` (built, in dist/) on any free port in a fresh temporary directory. */
export async function startDevSystem(args: string[]): Promise<DevSystem> {
  const dir = mkdtempSync(join(tmpdir(), 'bkv-bench-'));
  const child = spawn(process.execPath, [MAIN, 'dev', '--data', dir, '--port', '0', ...args], { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
  const pgid = child.pid;
  if (pgid === undefined) throw new Error('could not start bkv dev');
  const unguard = guardGroup(pgid);
  let err = '';
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  child.on('error', (e) => (err += `${e.message}\n`));
  const stop = async (opts: { keepDir?: boolean } = {}): Promise<void> => {
    signalGroup(pgid, 'SIGTERM');
    if (!(await waitGone(pgid, 5000))) {
      signalGroup(pgid, 'SIGKILL');
      if (!(await waitGone(pgid, 5000))) throw new Error(`bkv dev process group ${pgid} did not stop`);
    }
    unguard();
    if (!opts.keepDir) rmSync(dir, { recursive: true, force: true });
  };
  try {
    const processes = await waitReady(dir, child, () => err);
    const trust = readJson(join(dir, 'trust.json'));
    return { dir, trust, frontendUrl: urlOf(processes, 'frontend'), agentUrl: urlOf(processes, 'hsm'), processes, stop };
  } catch (e) {
    await stop({ keepDir: true });
    throw e;
  }
}
