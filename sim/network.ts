/**
 * The simulated network between agents, and between the front end and agents: untrusted. The
 * adversary delays, reorders, drops, duplicates and partitions messages, and replays any message
 * it has seen. Node -1 is the front end; members are 0..n-1.
 */
import type { Statement } from '../src/protocol/log.js';
import type { RequestEnvelope } from '../src/protocol/channel.js';
import type { AgentReply } from './agent.js';
import type { Rng } from './rng.js';

export const FRONT_END = -1;

export type Message =
  | { kind: 'request'; callKey: string; flow: number; env: RequestEnvelope; hops: number }
  | { kind: 'reply'; callKey: string; flow: number; reply: AgentReply }
  | { kind: 'statement-request'; round: number; index: number }
  | { kind: 'statement'; round: number; statement: Statement | undefined };

export interface Envelope {
  id: number;
  from: number;
  to: number;
  at: number;
  msg: Message;
}

export interface LinkFaults {
  drop: number;
  duplicate: number;
  maxDelayMs: number;
}

export class Network {
  private queue: Envelope[] = [];
  /** Everything ever sent (bounded): what the adversary can replay. */
  readonly seen: Envelope[] = [];
  private nextId = 1;
  /** Partition group of each member; the front end reaches every group. */
  group: number[];
  faults: LinkFaults = { drop: 0, duplicate: 0, maxDelayMs: 5 };
  sent = 0;
  dropped = 0;

  constructor(
    members: number,
    private readonly rng: Rng,
    private readonly now: () => number,
  ) {
    this.group = Array.from({ length: members }, () => 0);
  }

  get healed(): boolean {
    return this.group.every((g) => g === this.group[0]) && this.faults.drop === 0;
  }

  connected(a: number, b: number): boolean {
    return a === FRONT_END || b === FRONT_END || this.group[a] === this.group[b];
  }

  send(from: number, to: number, msg: Message, extraDelayMs = 0): void {
    this.sent++;
    const env: Envelope = { id: this.nextId++, from, to, at: this.now() + extraDelayMs + this.rng.int(0, this.faults.maxDelayMs), msg };
    this.seen.push(env);
    if (this.seen.length > 400) this.seen.splice(0, 100);
    if (this.rng.chance(this.faults.drop)) {
      this.dropped++;
      return;
    }
    this.queue.push(env);
    if (this.rng.chance(this.faults.duplicate)) this.queue.push({ ...env, id: this.nextId++, at: env.at + this.rng.int(0, 50) });
  }

  /** Re-injects a message seen before, possibly to another recipient (the network is untrusted). */
  replay(to?: number): Envelope | undefined {
    if (this.seen.length === 0) return undefined;
    const old = this.rng.pick(this.seen);
    const env = { ...old, id: this.nextId++, to: to ?? old.to, at: this.now() };
    this.queue.push(env);
    return env;
  }

  due(): Envelope[] {
    const now = this.now();
    return this.queue.filter((e) => e.at <= now);
  }

  get pending(): number {
    return this.queue.length;
  }

  /** Takes one due message, chosen at random (reordering); undefined when none is due. */
  take(): Envelope | undefined {
    const due = this.due();
    if (due.length === 0) return undefined;
    const env = this.rng.pick(due);
    this.queue.splice(this.queue.indexOf(env), 1);
    if (!this.connected(env.from, env.to)) {
      this.dropped++;
      return undefined;
    }
    return env;
  }

  /** Drops everything addressed to a member (it crashed: its sockets are gone). */
  dropTo(member: number): void {
    this.queue = this.queue.filter((e) => e.to !== member);
  }

  partition(groups: number[]): void {
    this.group = groups;
  }

  heal(): void {
    this.group = this.group.map(() => 0);
    this.faults = { drop: 0, duplicate: 0, maxDelayMs: 5 };
  }
}
