/**
 * `bkv dev`: a whole local system: a fleet of software HSMs, each with its agent in its own
 * process, and the front end, on the embedded storage (or PostgreSQL). State lives in DIR and
 * survives restarts. On first start it runs the key ceremony: the fleet keys are generated inside
 * member 0 and wrapped to the other members' identity keys.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { InputError } from './secrets.js';
import { startDevValidator } from './dev-validator.js';

const MAIN = fileURLToPath(new URL('./main.js', import.meta.url));

interface Ready {
  type: 'ready' | 'failed';
  role: string;
  url?: string;
  hasFleet?: boolean;
  trust?: unknown;
  message?: string;
}

interface Proc {
  role: string;
  member?: number;
  args: string[];
  log: string;
  child?: ChildProcess;
  url?: string;
  restarts: number;
}

function spawnProc(p: Proc): Promise<Ready> {
  const log = openSync(p.log, 'a');
  const child = fork(MAIN, p.args, { stdio: ['ignore', log, log, 'ipc'] });
  p.child = child;
  return new Promise<Ready>((resolveReady, reject) => {
    child.on('message', (m: Ready) => {
      if (m.type === 'ready') resolveReady(m);
      else reject(new Error(`${p.role} failed to start: ${m.message ?? 'see its log'}`));
    });
    child.on('exit', (code) => reject(new Error(`${p.role} exited with code ${code} before it was ready (log: ${p.log})`)));
  });
}

function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a ? ok(a.port) : fail(new Error('no free port'))));
    });
  });
}

async function postJson(url: string, body: unknown): Promise<unknown> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(30_000) });
  const json: unknown = await res.json();
  if (!res.ok) throw new Error(`${url}: ${JSON.stringify(json)}`);
  return json;
}

async function getJson(url: string): Promise<unknown> {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return res.json();
}

/** The key ceremony over the agents' HTTP endpoints; the HSMs enforce who receives the keys. */
async function ceremony(urls: string[]): Promise<void> {
  const ids = (await Promise.all(urls.map((u) => getJson(`${u}/agent/v1/identity`)))) as { signPublic: string; wrapPublic: string; hasFleet: boolean }[];
  const created = (await postJson(`${urls[0]}/agent/v1/ceremony/create`, { members: ids.map((i) => ({ signPublic: i.signPublic, wrapPublic: i.wrapPublic })) })) as { genesis: string; wrapped: { signPublic: string; blob: string }[] };
  for (let i = 1; i < urls.length; i++) {
    const w = created.wrapped.find((x) => x.signPublic === ids[i]!.signPublic);
    if (!w) throw new Error(`no wrapped keys for member ${i}`);
    await postJson(`${urls[i]}/agent/v1/ceremony/join`, { blob: w.blob, genesis: created.genesis });
  }
}

export function registerDevCommand(program: Command): void {
  program
    .command('dev')
    .description('run a whole local system (a fleet of software HSMs with agents, and the front end) and print how to use it')
    .option('--data <dir>', 'state directory', '.bkv')
    .option('--port <port>', 'front end port (0 = any free port)', '8080')
    .option('--fleet <n>', 'number of HSMs in the fleet (1..9; 5 survives the loss of 2)', '1')
    .option('--storage <url>', 'storage engine: a postgres:// URL (default: SQLite at DIR/vault.sqlite)')
    .option('--ke1-per-day <n>', 'recovery attempts per account per day at the front end', '10')
    .option('--no-restart', 'do not restart HSM processes that exit')
    .option('--validator', 'bundle mode: also run a validator and a witness, publish the fleet\'s keys, write DIR/trust-validator.json')
    .action(async (o: { data: string; port: string; fleet: string; storage?: string; ke1PerDay: string; restart: boolean; validator?: boolean }) => {
      const dir = resolve(o.data);
      if (!/^\d+$/.test(o.port)) throw new InputError('--port must be a number');
      const n = Number(o.fleet);
      if (!Number.isInteger(n) || n < 1 || n > 9) throw new InputError('--fleet must be an integer from 1 to 9');
      mkdirSync(join(dir, 'logs'), { recursive: true });
      const storage = o.storage ?? join(dir, 'vault.sqlite');
      const procs: Proc[] = [];
      let stopping = false;
      const stopAll = (code: number): void => {
        stopping = true;
        for (const p of procs) if (p.child && p.child.exitCode === null) p.child.kill('SIGTERM');
        setTimeout(() => process.exit(code), 500).unref();
      };
      process.on('SIGINT', () => stopAll(0));
      process.on('SIGTERM', () => stopAll(0));
      const writeProcesses = (): void => {
        const list = procs.map((p) => ({ role: p.role, ...(p.member !== undefined ? { member: p.member } : {}), pid: p.child?.pid, url: p.url }));
        writeFileSync(join(dir, 'processes.json'), `${JSON.stringify({ supervisor: process.pid, processes: list }, null, 2)}\n`);
      };
      try {
        const ports = await Promise.all(Array.from({ length: n }, () => freePort()));
        const urls = ports.map((p) => `http://127.0.0.1:${p}`);
        for (let i = 0; i < n; i++) {
          const peers = urls.filter((_, j) => j !== i);
          const args = ['hsm', 'serve', '--data', join(dir, `hsm-${i}`), '--storage', storage, '--port', String(ports[i]), ...(peers.length ? ['--peer', ...peers] : []), ...(n === 1 ? ['--create-fleet'] : [])];
          procs.push({ role: 'hsm', member: i, args, log: join(dir, 'logs', `hsm-${i}.log`), url: urls[i], restarts: 0 });
        }
        const ready = await Promise.all(procs.map(spawnProc));
        const withFleet = ready.filter((r) => r.hasFleet).length;
        if (withFleet === 0) await ceremony(urls);
        else if (withFleet !== n) throw new Error(`${withFleet} of ${n} HSMs hold fleet keys: DIR holds a different fleet size; use a new --data directory`);
        const trust = await getJson(`${urls[0]}/agent/v1/fleet`);
        writeFileSync(join(dir, 'trust.json'), `${JSON.stringify(trust, null, 2)}\n`);
        const fe: Proc = { role: 'frontend', args: ['frontend', 'serve', '--agent', ...urls, '--port', o.port, '--open', '--ke1-per-day', o.ke1PerDay], log: join(dir, 'logs', 'frontend.log'), restarts: 0 };
        procs.push(fe);
        fe.url = (await spawnProc(fe)).url;
        // Bundle mode (DESIGN section 6): validator and witness processes, then publication.
        const bundleMode = o.validator
          ? await startDevValidator(dir, urls, async (role, args) => {
              const p: Proc = { role, args, log: join(dir, 'logs', `${role}.log`), restarts: 0 };
              procs.push(p);
              const r = (await spawnProc(p)) as Ready & { vkey?: unknown };
              p.url = r.url;
              return r;
            })
          : undefined;
        writeProcesses();
        for (const p of procs) watch(p);
        const url = fe.url!;
        const trustPath = join(dir, 'trust.json');
        process.stdout.write(`Backup Key Vault: local system running.

  front end     ${url}
  fleet         ${n} HSM${n === 1 ? '' : 's'} (majority ${Math.floor(n / 2) + 1}), storage ${o.storage ? 'PostgreSQL' : join(dir, 'vault.sqlite')}
  trust file    ${trustPath}   (the pinned fleet keys)
  state         ${dir}   (survives restarts)
  logs          ${join(dir, 'logs')}
  processes     ${join(dir, 'processes.json')}

  OPEN MODE: the front end does not check app sessions (development only).
${bundleMode ? `
  validator     ${bundleMode.validatorUrl}   (its audit log: ${bundleMode.validatorUrl}/checkpoint)
  witness       ${bundleMode.witnessUrl}
  bundle mode   ${bundleMode.trustPath}   (pins the validator, witness and operator, not the fleet)
  published     fleet ${bundleMode.published.fleetId.slice(0, 16)}... seq ${bundleMode.published.seq}
  try           npx bkv status --server ${fe.url} --trust-validator ${bundleMode.trustPath} --user alice
` : ''}
Try it (in another terminal):
  echo 'my password' | npx bkv register --server ${url} --trust ${trustPath} --user alice --password-stdin
  echo 'my password' | npx bkv recover  --server ${url} --trust ${trustPath} --user alice --password-stdin
  npx bkv status --server ${url} --trust ${trustPath} --user alice
  npx bkv fleet status --server ${url}

Stop with Ctrl-C.
`);
      } catch (e) {
        process.stderr.write(`bkv dev: ${(e as Error).message}\n`);
        stopAll(6);
      }

      /** HSMs that exit are restarted (they rejoin by catching up); the front end's exit stops all. */
      function watch(p: Proc): void {
        p.child!.once('exit', (code, signal) => {
          if (stopping) return;
          if (p.role !== 'hsm' || !o.restart) {
            process.stderr.write(`bkv dev: ${p.role} exited (code ${code}, signal ${signal}); stopping. Logs: ${join(dir, 'logs')}\n`);
            stopAll(1);
            return;
          }
          p.restarts++;
          process.stderr.write(`bkv dev: hsm-${p.member} exited (code ${code}, signal ${signal}); restarting\n`);
          setTimeout(() => {
            if (stopping) return;
            spawnProc(p)
              .then(() => writeProcesses())
              .catch((err: Error) => process.stderr.write(`bkv dev: hsm-${p.member} did not restart: ${err.message}\n`));
            writeProcesses();
            watch(p);
          }, Math.min(5000, 500 * p.restarts));
        });
      }
    });
}
