/**
 * `npm run bench [-- --quick] [-- --only NAME]`: runs the benchmarks, prints a table of results
 * with the conditions they were measured under, and writes bench/results.json.
 */
import { writeFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { benchBackup } from './backup.js';
import { benchBundle } from './bundle.js';
import { benchFleet } from './fleet.js';
import { benchHpke } from './hpke.js';
import type { BenchResult } from './result.js';
import { benchTree } from './tree.js';
import { benchVault } from './vault.js';

interface Bench {
  name: string;
  run(opts: { quick: boolean }): Promise<BenchResult[]>;
}

const BENCHES: Bench[] = [
  { name: 'hpke', run: benchHpke },
  { name: 'tree', run: benchTree },
  { name: 'backup', run: benchBackup },
  { name: 'vault', run: benchVault },
  { name: 'fleet', run: benchFleet },
  { name: 'bundle', run: benchBundle },
];

const RESULTS_FILE = fileURLToPath(new URL('../../bench/results.json', import.meta.url));
const USAGE = `usage: node dist/bench/run.js [--quick] [--only ${BENCHES.map((b) => b.name).join('|')}]`;

interface Args {
  quick: boolean;
  only?: string;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { quick: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') args.quick = true;
    else if (a === '--only' && argv[i + 1] !== undefined) args.only = argv[++i];
    else if (a?.startsWith('--only=')) args.only = a.slice('--only='.length);
    else throw new Error(`unknown argument ${a}\n${USAGE}`);
  }
  if (args.only !== undefined && !BENCHES.some((b) => b.name === args.only)) throw new Error(`no benchmark named ${args.only}\n${USAGE}`);
  return args;
}

function machineConditions(quick: boolean): string {
  const cpu = cpus()[0]?.model.trim() ?? 'unknown CPU';
  return `${cpu}, ${availableParallelism()} cores, node ${process.version}, ${new Date().toISOString()}, ${quick ? 'quick' : 'full'} run`;
}

function printTable(results: BenchResult[]): void {
  console.table(results.map((r) => ({ name: r.name, value: r.value, unit: r.unit, baseline: r.baseline ?? '', ratio: r.ratio ?? '' })));
}

function printConditions(results: BenchResult[]): void {
  for (const r of results) console.log(`  ${r.name}: ${r.conditions}`);
}

/** Runs one benchmark; a failure is reported and the others still run. */
async function runOne(b: Bench, quick: boolean): Promise<BenchResult[] | null> {
  const t0 = performance.now();
  console.log(`\n== ${b.name} (${quick ? 'quick' : 'full'})`);
  try {
    const results = await b.run({ quick });
    printTable(results);
    printConditions(results);
    console.log(`   ${b.name} took ${(performance.now() - t0) / 1000 | 0} s`);
    return results;
  } catch (e) {
    console.error(`bench ${b.name} failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    return null;
  }
}

function writeResults(results: BenchResult[], machine: string): void {
  const rows = results.map((r) => ({ name: r.name, unit: r.unit, value: r.value, baseline: r.baseline ?? null, ratio: r.ratio ?? null, conditions: `${r.conditions}; ${machine}` }));
  writeFileSync(RESULTS_FILE, `${JSON.stringify(rows, null, 2)}\n`);
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const machine = machineConditions(args.quick);
  console.log(`Backup Key Vault benchmarks: ${machine}`);
  const all: BenchResult[] = [];
  let failed = 0;
  for (const b of BENCHES.filter((x) => args.only === undefined || x.name === args.only)) {
    const results = await runOne(b, args.quick);
    if (results) all.push(...results);
    else failed++;
  }
  console.log(`\n== all results (${machine})`);
  printTable(all);
  writeResults(all, machine);
  console.log(`wrote ${RESULTS_FILE}${failed > 0 ? `; ${failed} benchmark(s) failed` : ''}`);
  return failed > 0 ? 1 : 0;
}

try {
  process.exit(await main());
} catch (e) {
  console.error(e instanceof Error ? e.message : String(e));
  process.exit(2);
}
