/** `bkv hsm serve` and `bkv frontend serve`: the long-running processes `bkv dev` starts. */
import { announce, intOption, onSignals } from './process-helpers.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import type { Command } from 'commander';
import pino from 'pino';
import { Agent } from '../agent/agent.js';
import { buildAgentServer } from '../agent/server.js';
import { BundleStore } from '../agent/bundle.js';
import { SqliteStorage } from '../storage/sqlite.js';
import { PostgresStorage } from '../storage/postgres.js';
import type { Storage } from '../storage/types.js';
import { softwarePlatform } from '../softhsm/platform.js';
import { buildFrontend } from '../frontend/server.js';
import { jwtSessions, openSessions, type JwtConfig } from '../frontend/auth.js';
import { makeTrustFile } from '../protocol/fleet.js';
import { InputError } from './secrets.js';

/** A postgres:// URL selects PostgreSQL; anything else is a SQLite file path. */
export async function openStorage(spec: string): Promise<Storage> {
  if (/^postgres(ql)?:\/\//.test(spec)) return PostgresStorage.connect(spec);
  return new SqliteStorage(spec);
}

export function registerServeCommands(program: Command): void {
  const hsm = program.command('hsm').description('run a software HSM and its agent');
  hsm
    .command('serve')
    .description('run one software HSM with its agent over a storage engine')
    .requiredOption('--data <dir>', 'the HSM\'s private directory (NVRAM, sealed keys); never shared with storage')
    .requiredOption('--storage <path-or-url>', 'SQLite file, or postgres://... URL, of the fleet\'s log and records')
    .option('--host <host>', 'listen address', '127.0.0.1')
    .option('--port <port>', 'listen port (0 = any free port)', '0')
    .option('--peer <url...>', 'agent URLs of the other members of the fleet')
    .option('--create-fleet', 'generate a one-member fleet inside this HSM if it has none (development)')
    .option('--compact-grace <entries>', 'log entries kept below the latest certificate', '1000')
    .option('--lease-ms <ms>', 'leader lease duration (liveness only)', '1500')
    .action(async (o: { data: string; storage: string; host: string; port: string; peer?: string[]; createFleet?: boolean; compactGrace: string; leaseMs: string }) => {
      const log = pino({ level: process.env.BKV_LOG_LEVEL ?? 'info', base: { role: 'hsm' } }, pino.destination(2));
      let storage: Storage;
      let agent: Agent;
      try {
        storage = await openStorage(o.storage);
        agent = await Agent.start({
          platform: softwarePlatform(o.data),
          storage,
          log,
          createFleet: o.createFleet ? {} : undefined,
          peers: o.peer ?? [],
          compactGraceEntries: intOption(o.compactGrace, '--compact-grace', 1, 1e9),
          leaseMs: intOption(o.leaseMs, '--lease-ms', 100, 600_000),
        });
      } catch (e) {
        log.fatal({ err: (e as Error).message }, 'cannot start');
        process.stderr.write(`bkv hsm: ${(e as Error).message}\n`);
        announce({ type: 'failed', role: 'hsm', message: (e as Error).message });
        process.exit(6);
      }
      // The fleet's validation bundle (DESIGN section 6) is public; it is kept beside the HSM's files.
      const bundles = new BundleStore({ file: join(o.data, 'bundle.json'), keys: () => agent.publicKeys(), log });
      const app = buildAgentServer(agent, log, { bundles });
      const address = await app.listen({ host: o.host, port: intOption(o.port, '--port', 0, 65535) });
      const keys = agent.hsm.publicKeys();
      announce({ type: 'ready', role: 'hsm', url: address, hasFleet: keys !== undefined, trust: keys ? makeTrustFile(keys, agent.fleetConfig().routes) : undefined });
      log.info({ url: address, member: agent.memberHex, fleet: keys !== undefined }, keys ? 'agent listening' : 'agent listening; awaiting the key ceremony');
      onSignals(async () => {
        await app.close();
        await agent.close();
        await storage.close();
      });
    });

  const fe = program.command('frontend').description('run the HTTP front end');
  fe.command('serve')
    .description('relay sealed requests to the fleet, with app-session checks and rate limits')
    .requiredOption('--agent <url...>', 'agent URLs of the fleet\'s members')
    .option('--host <host>', 'listen address', '127.0.0.1')
    .option('--port <port>', 'listen port (0 = any free port)', '8080')
    .option('--open', 'OPEN MODE: trust any account tag, no app session (development only)')
    .option('--jwt-config <file>', 'JSON {jwks, issuer, audience, userClaim?}: verify app sessions')
    .option('--ke1-per-day <n>', 'recovery attempts (KE1) per account per day', '10')
    .action(async (o: { agent: string[]; host: string; port: string; open?: boolean; jwtConfig?: string; ke1PerDay: string }) => {
      const log = pino({ level: process.env.BKV_LOG_LEVEL ?? 'info', base: { role: 'frontend' } }, pino.destination(2));
      if (!o.open && !o.jwtConfig) throw new InputError('choose --jwt-config FILE, or --open for development');
      let sessions = openSessions;
      if (o.jwtConfig) sessions = jwtSessions(JSON.parse(readFileSync(o.jwtConfig, 'utf8')) as JwtConfig);
      else log.warn('OPEN MODE: app sessions are not checked; any caller may act for any account tag. Development only.');
      const app = buildFrontend({ agents: o.agent, sessions, ke1PerTagPerDay: intOption(o.ke1PerDay, '--ke1-per-day', 1, 1e9), log });
      const address = await app.listen({ host: o.host, port: intOption(o.port, '--port', 0, 65535) });
      announce({ type: 'ready', role: 'frontend', url: address });
      log.info({ url: address }, 'front end listening');
      onSignals(async () => {
        await app.close();
      });
    });
}


