/** Starts `bkv dev` as real processes over real sockets, and runs the `bkv` CLI against it. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const BKV = resolve('dist/src/cli/main.js');

export interface DevSystem {
  dir: string;
  url: string;
  trust: string;
  processes: { role: string; pid: number; url: string }[];
  stop(): Promise<void>;
}

export async function startDev(dir: string, extra: string[] = []): Promise<DevSystem> {
  const child: ChildProcess = spawn(process.execPath, [BKV, 'dev', '--data', dir, '--port', '0', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  await new Promise<void>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`bkv dev did not start: ${out}`)), 30_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('Stop with Ctrl-C')) {
        clearTimeout(timer);
        ok();
      }
    });
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`bkv dev exited with ${code}: ${out}`));
    });
  });
  const p = JSON.parse(readFileSync(join(dir, 'processes.json'), 'utf8')) as { processes: DevSystem['processes'] };
  const fe = p.processes.find((x) => x.role === 'frontend')!;
  return {
    dir,
    url: fe.url,
    trust: join(dir, 'trust.json'),
    processes: p.processes,
    stop: () =>
      new Promise<void>((ok) => {
        if (child.exitCode !== null) return ok();
        child.once('exit', () => ok());
        child.kill('SIGTERM');
      }),
  };
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `bkv ARGS` with `input` on stdin. */
export function bkv(args: string[], input = ''): CliResult {
  const r = spawnSync(process.execPath, [BKV, ...args], { input, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}
