/**
 * `bkv dev`: a whole local system on the embedded storage: one software HSM with its agent, and
 * the front end, each its own process. State lives in DIR and survives restarts.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { InputError } from './secrets.js';

const MAIN = fileURLToPath(new URL('./main.js', import.meta.url));

interface Ready {
  type: 'ready' | 'failed';
  role: string;
  url?: string;
  trust?: unknown;
  message?: string;
}

function start(role: string, args: string[], logFile: string): { child: ChildProcess; ready: Promise<Ready> } {
  const log = openSync(logFile, 'a');
  const child = fork(MAIN, args, { stdio: ['ignore', log, log, 'ipc'] });
  const ready = new Promise<Ready>((resolveReady, reject) => {
    child.on('message', (m: Ready) => {
      if (m.type === 'ready') resolveReady(m);
      else reject(new Error(`${role} failed to start: ${m.message ?? 'see its log'}`));
    });
    child.on('exit', (code) => reject(new Error(`${role} exited with code ${code} before it was ready (log: ${logFile})`)));
  });
  return { child, ready };
}

export function registerDevCommand(program: Command): void {
  program
    .command('dev')
    .description('run a whole local system (software HSM + agent + front end on SQLite) and print how to use it')
    .option('--data <dir>', 'state directory', '.bkv')
    .option('--port <port>', 'front end port (0 = any free port)', '8080')
    .option('--ke1-per-day <n>', 'recovery attempts per account per day at the front end', '10')
    .action(async (o: { data: string; port: string; ke1PerDay: string }) => {
      const dir = resolve(o.data);
      if (!/^\d+$/.test(o.port)) throw new InputError('--port must be a number');
      mkdirSync(join(dir, 'logs'), { recursive: true });
      const children: ChildProcess[] = [];
      const stopAll = (code: number): void => {
        for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
        setTimeout(() => process.exit(code), 300).unref();
      };
      process.on('SIGINT', () => stopAll(0));
      process.on('SIGTERM', () => stopAll(0));
      try {
        const hsm = start('hsm', ['hsm', 'serve', '--data', join(dir, 'hsm-0'), '--storage', join(dir, 'vault.sqlite'), '--create-fleet'], join(dir, 'logs', 'hsm-0.log'));
        children.push(hsm.child);
        const hsmReady = await hsm.ready;
        writeFileSync(join(dir, 'trust.json'), `${JSON.stringify(hsmReady.trust, null, 2)}\n`);
        const fe = start('frontend', ['frontend', 'serve', '--agent', hsmReady.url!, '--port', o.port, '--open', '--ke1-per-day', o.ke1PerDay], join(dir, 'logs', 'frontend.log'));
        children.push(fe.child);
        const feReady = await fe.ready;
        const processes = [
          { role: 'hsm', member: 0, pid: hsm.child.pid, url: hsmReady.url },
          { role: 'frontend', pid: fe.child.pid, url: feReady.url },
        ];
        writeFileSync(join(dir, 'processes.json'), `${JSON.stringify({ supervisor: process.pid, processes }, null, 2)}\n`);
        for (const c of children) {
          c.on('exit', (code, signal) => {
            process.stderr.write(`bkv dev: a process exited (code ${code}, signal ${signal}); stopping. Logs: ${join(dir, 'logs')}\n`);
            stopAll(1);
          });
        }
        const url = feReady.url!;
        const trust = join(dir, 'trust.json');
        process.stdout.write(`Backup Key Vault: local system running.

  front end     ${url}
  trust file    ${trust}   (the pinned fleet keys)
  state         ${dir}   (survives restarts)
  logs          ${join(dir, 'logs')}
  processes     ${join(dir, 'processes.json')}

  OPEN MODE: the front end does not check app sessions (development only).

Try it (in another terminal):
  echo 'my password' | npx bkv register --server ${url} --trust ${trust} --user alice --password-stdin
  echo 'my password' | npx bkv recover  --server ${url} --trust ${trust} --user alice --password-stdin
  npx bkv status --server ${url} --trust ${trust} --user alice

Stop with Ctrl-C.
`);
      } catch (e) {
        process.stderr.write(`bkv dev: ${(e as Error).message}\n`);
        stopAll(6);
      }
    });
}
