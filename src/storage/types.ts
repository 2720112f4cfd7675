/**
 * The storage engine's interface (DESIGN section 3: untrusted). The HSM checks everything it
 * reads from here; storage provides ordering, data and liveness, never safety.
 */
export interface StoredEntry {
  index: number;
  entry: Uint8Array;
  /** Top node hash of the record tree after this entry: a hint the HSM re-checks against the root. */
  top: Uint8Array | null;
}

export interface NodeWrite {
  hash: Uint8Array;
  node: Uint8Array;
}

export type AppendResult = { type: 'Appended' } | { type: 'IndexTaken' } | { type: 'NotLinked' };

export interface StoredCertificate {
  index: number;
  hash: Uint8Array;
  statements: Uint8Array[];
}

export interface Storage {
  readonly engine: 'sqlite' | 'postgres';
  /**
   * Writes the new tree nodes and the entry in one transaction, only if the index is free
   * (DESIGN section 5, "Agents and storage"). Durable when it resolves.
   */
  appendEntry(e: StoredEntry, added: NodeWrite[], removed: Uint8Array[]): Promise<AppendResult>;
  readEntries(fromIndex: number, limit: number): Promise<StoredEntry[]>;
  latestEntry(): Promise<StoredEntry | undefined>;
  getNode(hash: Uint8Array): Promise<Uint8Array | undefined>;
  putCertificate(c: StoredCertificate): Promise<void>;
  latestCertificate(): Promise<StoredCertificate | undefined>;
  /**
   * Removes tree nodes superseded at or below `index` and entries below `index` (compaction
   * below a certificate, after a grace period chosen by the caller). Returns what it removed.
   */
  compact(index: number): Promise<{ nodes: number; entries: number }>;
  /**
   * Takes or renews the leader lease when it is free, expired, or already `holder`'s, and returns
   * who holds it. The lease serves liveness only: safety never depends on it (DESIGN section 5).
   */
  acquireLease(holder: string, ttlMs: number, nowMs: number): Promise<Lease>;
  /** Gives the lease up at once, if `holder` has it (a member that cannot lead). */
  releaseLease(holder: string): Promise<void>;
  close(): Promise<void>;
}

export interface Lease {
  holder: string;
  expiresAt: number;
}
