/** An in-process system for tests: a real software HSM, agent and SQLite file, no HTTP. */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { Agent } from '../../src/agent/agent.js';
import { SqliteStorage } from '../../src/storage/sqlite.js';
import { softwarePlatform } from '../../src/softhsm/platform.js';
import { Vault, VaultError } from '../../src/client/vault.js';
import { makeTrustFile, parseTrustFile, type PinnedFleet } from '../../src/protocol/fleet.js';
import type { Transport } from '../../src/client/transport.js';
import type { RequestEnvelope } from '../../src/protocol/channel.js';
import type { FleetPolicy } from '../../src/hsm/keys.js';

export interface InProcessSystem {
  dir: string;
  agent: Agent;
  storage: SqliteStorage;
  transport: Transport;
  /** Every envelope and reply that crossed the untrusted boundary. */
  seen: { envelopes: RequestEnvelope[]; replies: Uint8Array[] };
  vault(): Vault;
  fleet: PinnedFleet;
  close(): Promise<void>;
}

export async function startSystem(opts: { dir?: string; policy?: Partial<FleetPolicy>; compactGraceEntries?: number; leaseMs?: number; now?: () => number } = {}): Promise<InProcessSystem> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'bkv-test-'));
  const storage = new SqliteStorage(join(dir, 'vault.sqlite'));
  const agent = await Agent.start({
    platform: softwarePlatform(join(dir, 'hsm-0'), opts.now ? { now: opts.now } : {}),
    storage,
    log: pino({ level: 'silent' }),
    createFleet: { policy: opts.policy ?? {} },
    compactGraceEntries: opts.compactGraceEntries ?? 1000,
    ...(opts.leaseMs ? { leaseMs: opts.leaseMs } : {}),
  });
  const seen = { envelopes: [] as RequestEnvelope[], replies: [] as Uint8Array[] };
  const transport: Transport = {
    async send(env) {
      seen.envelopes.push(env);
      const r = await agent.submit(env);
      if (r.type === 'Sealed') seen.replies.push(r.body);
      return r;
    },
  };
  const fleet = parseTrustFile(makeTrustFile(agent.publicKeys(), agent.fleetConfig().routes));
  return {
    dir,
    agent,
    storage,
    transport,
    seen,
    fleet,
    vault: () => new Vault({ fleet, transport, keyStretching: 'insecure-fast-for-tests-only' }),
    async close() {
      await agent.close();
      await storage.close();
    },
  };
}

/** 'ok', or the code of the VaultError the promise rejects with (anything else is rethrown). */
export async function vaultCode(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    if (e instanceof VaultError) return e.code;
    throw e;
  }
}
