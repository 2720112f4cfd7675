/**
 * npm run sim -- --seeds N [--seed S] [--steps K] [--verbose]
 *
 * Runs seeds S, S+1, ..., S+N-1 (S defaults to 1, N to 1), each for K steps (default 400), and
 * prints every violation with its seed and a one-line reproduction. The last line reads
 * `N seeds, V violations`; the exit status is 1 when V > 0.
 */
import { LIVENESS_STEPS, runSeed, type SimResult } from './world.js';
import { mutants, type MutantName } from './mutants.js';

export const DEFAULT_STEPS = 1000;

interface Args {
  seeds: number;
  seed: number;
  steps: number;
  verbose: boolean;
  stats: boolean;
  mutant?: MutantName;
}

function parse(argv: string[]): Args {
  const args: Args = { seeds: 1, seed: 1, steps: DEFAULT_STEPS, verbose: false, stats: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = (): number => {
      const v = Number(argv[++i]);
      if (!Number.isSafeInteger(v) || v < 0) throw new Error(`${a} needs a non-negative integer`);
      return v;
    };
    if (a === '--seeds') args.seeds = value();
    else if (a === '--seed') args.seed = value();
    else if (a === '--steps') args.steps = value();
    else if (a === '--verbose' || a === '-v') args.verbose = true;
    else if (a === '--stats') args.stats = true;
    else if (a === '--mutant') {
      const m = argv[++i] as MutantName;
      if (!(m in mutants)) throw new Error(`--mutant: one of ${Object.keys(mutants).join(', ')}`);
      args.mutant = m;
    } else if (a === '--help' || a === '-h') {
      console.log('usage: npm run sim -- --seeds N [--seed S] [--steps K] [--verbose] [--stats] [--mutant NAME]');
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  return args;
}

export function reproduction(r: Pick<SimResult, 'seed'>, steps: number, mutant?: string): string {
  return `npm run sim -- --seed ${r.seed}${steps !== DEFAULT_STEPS ? ` --steps ${steps}` : ''}${mutant ? ` --mutant ${mutant}` : ''}`;
}

async function main(): Promise<void> {
  const args = parse(process.argv.slice(2));
  const t0 = performance.now();
  let violations = 0;
  let s5Max = 0;
  const totals: Record<string, number> = {};
  const profiles: Record<string, number> = {};
  let failedSeeds = 0;
  for (let k = 0; k < args.seeds; k++) {
    const seed = args.seed + k;
    const r = await runSeed({ seed, steps: args.steps, core: args.mutant ? mutants[args.mutant] : undefined, trace: args.verbose ? (line) => console.log(line) : undefined });
    if (args.seeds === 1 || args.verbose) {
      console.log(`seed ${seed}: ${r.members} members, ${r.profile}, ${r.steps} steps, certified up to ${r.stats.certTip}, ${r.stats.released ?? 0} responses released, resumed ${r.stats.s5Resumed ?? 0} times after healing; trace ${r.traceHash}`);
    }
    s5Max = Math.max(s5Max, r.stats.s5MaxSteps ?? 0);
    for (const [k, v] of Object.entries(r.stats)) totals[k] = k.startsWith('max') || k === 's5MaxSteps' ? Math.max(totals[k] ?? 0, v) : (totals[k] ?? 0) + v;
    profiles[`${r.members} members, ${r.profile}`] = (profiles[`${r.members} members, ${r.profile}`] ?? 0) + 1;
    if (r.violations.length > 0) {
      failedSeeds++;
      violations += r.violations.length;
      for (const v of r.violations) console.log(`VIOLATION seed ${seed} step ${v.step} ${v.check}: ${v.message}`);
      console.log(`  reproduce: ${reproduction(r, args.steps, args.mutant)}   (trace ${r.traceHash})`);
    }
  }
  const secs = (performance.now() - t0) / 1000;
  if (args.stats) {
    console.log('profiles:', JSON.stringify(profiles));
    console.log('totals:', JSON.stringify(totals));
  }
  console.log(`${args.seeds} seeds x ${args.steps} steps in ${secs.toFixed(1)} s (${(args.seeds / secs).toFixed(2)} seeds/s; slowest recovery ${s5Max} of the ${LIVENESS_STEPS} steps S5 allows)${failedSeeds ? `; ${failedSeeds} seeds failed` : ''}`);
  console.log(`${args.seeds} seeds, ${violations} violations`);
  process.exitCode = violations > 0 ? 1 : 0;
}

await main();
