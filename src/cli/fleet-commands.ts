/** `bkv fleet status`: the fleet as its operator sees it. */
import type { Command } from 'commander';
import { commandGroup } from './groups.js';
import { EXIT } from './exit-codes.js';

interface MemberStatus {
  index: number;
  url: string;
  reachable: boolean;
  member: string | null;
  leader: boolean;
  captured: number | null;
  persisted: number | null;
  committed: number | null;
  lag: number | null;
  halted: string | null;
}

interface FleetStatus {
  members: MemberStatus[];
  leader: number | null;
  lastCommitted: number | null;
  majority: number;
  up: number;
}

export function registerFleetCommands(program: Command): void {
  commandGroup(program, 'fleet', 'operate a fleet')
    .command('status')
    .description('members, leader, last committed index, and how far each member lags')
    .requiredOption('--server <url>', 'front end URL')
    .option('--json', 'print JSON')
    .action(async (o: { server: string; json?: boolean }) => {
      let s: FleetStatus;
      try {
        const res = await fetch(`${o.server.replace(/\/+$/, '')}/v1/fleet/status`, { signal: AbortSignal.timeout(10_000) });
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        s = (await res.json()) as FleetStatus;
      } catch (e) {
        process.stderr.write(`bkv: cannot read the fleet status from ${o.server}: ${(e as Error).message}\n`);
        process.exitCode = EXIT.unavailable;
        return;
      }
      if (o.json) {
        process.stdout.write(`${JSON.stringify(s)}\n`);
      } else {
        process.stdout.write(`leader: ${s.leader === null ? 'none' : `member ${s.leader}`}   last committed: ${s.lastCommitted ?? '-'}   up: ${s.up} of ${s.members.length} (majority ${s.majority})\n\n`);
        process.stdout.write('member  state        captured  persisted  lag     id\n');
        for (const m of s.members) {
          const state = !m.reachable ? 'down' : m.halted ? 'halted' : m.leader ? 'leader' : (m.lag ?? 0) > 0 ? 'catching up' : 'follower';
          process.stdout.write(`${String(m.index).padEnd(8)}${state.padEnd(13)}${String(m.captured ?? '-').padEnd(10)}${String(m.persisted ?? '-').padEnd(11)}${String(m.lag ?? '-').padEnd(8)}${m.member ?? ''}\n`);
        }
      }
      if (s.up < s.majority) process.exitCode = EXIT.unavailable;
    });
}
