/**
 * Catch-up (DESIGN section 5, "Capture" and "Jump"): shows an HSM the entries storage holds from
 * its position on, and jumps it with the latest stored certificate when storage was compacted past
 * it. The agent runs this against its storage engine; the deterministic simulator (sim/) runs the
 * very same code against a simulated, sometimes hostile, storage.
 *
 * Nothing here is trusted: the HSM checks every entry (MAC, index, prev) and every certificate.
 */
import type { HsmCore, ReleasedResponse } from '../hsm/core.js';
import { decodeStatement } from '../protocol/log.js';
import { ProtocolError } from '../protocol/errors.js';
import type { Storage } from '../storage/types.js';

export class AgentError extends ProtocolError {}

/** The HSM calls catch-up makes. */
export type CaptureHsm = Pick<HsmCore, 'status' | 'captureNext' | 'captureJump' | 'stepDown'>;
/** The storage reads catch-up makes. */
export type CaptureStorage = Pick<Storage, 'readEntries' | 'latestEntry' | 'latestCertificate'>;

export interface CatchUpEvents {
  /** The tree's top node hash after the entry the HSM now stands on (a hint the HSM re-checks). */
  top(top: Uint8Array | null): void;
  /** Responses of a leader that saw another entry at an index it proposed: "outcome unknown". */
  steppedDown(released: ReleasedResponse[]): void;
  jumped?(index: number): void;
}

/**
 * Shows the HSM the entries in storage from its position on. Storage that lacks the entry NVRAM
 * names was rolled back or replaced: the HSM refuses it (I5), and so do we. If storage was
 * compacted past this member, it jumps with the latest certificate.
 */
export async function catchUp(hsm: CaptureHsm, storage: CaptureStorage, on: CatchUpEvents): Promise<void> {
  const st = hsm.status();
  if (st.halted) throw new AgentError('Halted', `HSM halted: ${st.halted}`);
  let from = st.captured ? st.captured.index + 1 : st.awaiting!.index;
  for (;;) {
    const batch = await storage.readEntries(from, 256);
    if (batch.length === 0) break;
    if (batch[0]!.index !== from) {
      await jump(hsm, storage, on);
      from = hsm.status().captured!.index + 1;
      continue;
    }
    const r = hsm.captureNext(batch.map((e) => e.entry));
    if (r.type !== 'Ok') {
      // A leader whose own entry storage no longer shows has lost it: answer its pending requests.
      on.steppedDown(hsm.stepDown());
      throw new AgentError('Halted', `the HSM refuses storage's log at index ${batch[0]!.index} (${r.type}): storage does not hold the history this HSM persisted; it may have been rolled back or replaced`);
    }
    if (r.steppedDown) on.steppedDown(r.steppedDown);
    on.top(batch[batch.length - 1]!.top);
    from = batch[batch.length - 1]!.index + 1;
  }
  const after = hsm.status();
  if (!after.captured) {
    const latest = await storage.latestEntry();
    throw new AgentError('Halted', `storage is behind this HSM: its NVRAM names log index ${after.awaiting!.index}, storage ends at ${latest?.index ?? 'nothing'}. Refusing stale or rolled-back storage.`);
  }
}

/** Moves the HSM to the latest stored certificate, with the entries that link its statements. */
export async function jump(hsm: CaptureHsm, storage: CaptureStorage, on: CatchUpEvents): Promise<void> {
  const cert = await storage.latestCertificate();
  if (!cert) throw new AgentError('Halted', 'storage was compacted past this member and holds no certificate to jump with');
  const statements = cert.statements.map(decodeStatement);
  const maxIndex = Math.max(...statements.map((s) => s.index));
  const entries = await storage.readEntries(cert.index, maxIndex - cert.index + 1);
  if (entries.length === 0 || entries[0]!.index !== cert.index) throw new AgentError('Halted', 'the certified entry is missing from storage');
  const r = hsm.captureJump(entries[0]!.entry, statements, entries.slice(1).map((e) => e.entry));
  if (r.type !== 'Ok') throw new AgentError('Halted', `the HSM refuses the certificate to jump with: ${r.type}`);
  if (r.steppedDown) on.steppedDown(r.steppedDown);
  on.top(entries[0]!.top);
  on.jumped?.(cert.index);
}
