/**
 * The client never goes backwards (DESIGN section 6): not in seq per fleet, not to a checkpoint
 * inconsistent with one it verified before (and it keeps both as evidence), and not below the
 * minimum seq and checkpoint its release ships with.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toBase64, utf8 } from '../../src/crypto/bytes.js';
import { sha256 } from '../../src/crypto/sha256.js';
import { BundleError, memoryStateStore, verifyBundle, type ClientStateStore, type ValidatorTrust } from '../../src/client/bundle.js';
import type { ParsedBundle } from '../../src/protocol/bundle.js';
import { statementLeafHash } from '../../src/protocol/statement.js';
import { formatCheckpoint, formatTlogProof, inclusionProof, parseNote, rootFromLeafHashes, sign, subtreeReaderFromLeafHashes } from '../../src/protocol/tlog/index.js';
import { makeFleet, makeWorld, type World } from '../helpers/validator-world.js';

let w: World;
beforeAll(async () => {
  w = await makeWorld({ quorum: 0, witnesses: 0 });
});
afterAll(async () => w?.close());

async function code(b: ParsedBundle, store: ClientStateStore, trust: ValidatorTrust = w.trust): Promise<string> {
  try {
    await verifyBundle(b, trust, store, { now: w.now.t });
    return 'ok';
  } catch (e) {
    if (e instanceof BundleError) return e.code;
    throw e;
  }
}

function sizeOf(b: ParsedBundle): number {
  return Number(parseNote(b.tlogProof.checkpoint).text.split('\n')[1]);
}

/**
 * The same statement in a forked log: a tree of `size` leaves (junk around the statement), with a
 * checkpoint the log key signs. A log that shows this to one client and the real tree to another
 * has forked.
 */
async function forked(b: ParsedBundle, size: number): Promise<ParsedBundle> {
  const index = b.tlogProof.index;
  const leaves = Array.from({ length: size }, (_, i) => (i === index ? statementLeafHash(b.statement) : sha256(utf8(`junk ${i}`))));
  const text = formatCheckpoint({ origin: w.trust.log.origin, treeSize: size, rootHash: rootFromLeafHashes(leaves), extensions: [] });
  const checkpoint = await sign(text, [w.logKey]);
  const proof = formatTlogProof({ index, proof: inclusionProof(index, size, subtreeReaderFromLeafHashes(leaves)), checkpoint });
  return { ...b, proof, tlogProof: { index, proof: inclusionProof(index, size, subtreeReaderFromLeafHashes(leaves)), checkpoint }, consistency: undefined } as ParsedBundle;
}

describe('seq never goes backwards', () => {
  it('refuses an older statement of a fleet after a newer one (SeqRegression)', async () => {
    const store = memoryStateStore();
    const { bundle: first } = await w.publish();
    expect(await code(first, store)).toBe('ok');
    const { bundle: renewed } = await w.publish();
    expect(await code(w.withConsistency(renewed, sizeOf(first)), store)).toBe('ok');
    expect((await store.load()).fleets[Buffer.from(w.fleet.hsm.status().fleetId!).toString('hex')]?.seq).toBe(2);
    // The first statement is still inside its window, but the client has seen seq 2.
    expect(await code(w.withConsistency(first, sizeOf(renewed)), store)).toBe('SeqRegression');
    // The same newest one again is fine.
    expect(await code(renewed, store)).toBe('ok');
  });

  it('refuses a seq below the release\'s minimum', async () => {
    const { bundle } = await w.publish();
    const seq = Number(/^seq (\d+)$/m.exec(bundle.statement)![1]);
    expect(await code(bundle, memoryStateStore(), { ...w.trust, minimum: { seq: seq + 1 } })).toBe('SeqRegression');
    expect(await code(bundle, memoryStateStore(), { ...w.trust, minimum: { seq } })).toBe('ok');
  });
});

describe('checkpoints are consistent with every one verified before', () => {
  it('asks for a consistency proof once it holds a checkpoint (ConsistencyProofMissing)', async () => {
    const store = memoryStateStore();
    const { bundle: a } = await w.publish();
    expect(await code(a, store)).toBe('ok');
    const other = await makeFleet(w.clock);
    const { bundle: c } = await w.publish({ fleet: other });
    const { bundle: b } = await w.publish();
    expect(await code(b, store)).toBe('ConsistencyProofMissing');
    // A proof for other sizes is no proof.
    expect(await code({ ...w.withConsistency(b, sizeOf(a) - 1) }, store)).toBe('ConsistencyProofMissing');
    expect(await code(w.withConsistency(b, sizeOf(a)), store)).toBe('ok');
    // Another fleet's bundle with an older checkpoint is fine, once proven a prefix of the newest seen.
    expect(sizeOf(c)).toBeLessThan(sizeOf(b));
    expect(await code(c, store)).toBe('ConsistencyProofMissing');
    expect(await code(w.withConsistency(c, sizeOf(b)), store)).toBe('ok');
    expect((await store.load()).checkpoint?.size).toBe(sizeOf(b));
  });

  it('refuses a fork and keeps both checkpoints as evidence (InconsistentCheckpoint)', async () => {
    const store = memoryStateStore();
    const { bundle } = await w.publish();
    expect(await code(bundle, store)).toBe('ok');
    const n = sizeOf(bundle);
    // Same size, another root.
    expect(await code(await forked(bundle, n), store)).toBe('InconsistentCheckpoint');
    // A larger forked tree, with the consistency proof the real log would give: it does not join.
    const bigger = await forked(bundle, n + 3);
    const proof = { size1: n, size2: n + 3, proof: [sha256(utf8('a')), sha256(utf8('b')), sha256(utf8('c'))] };
    expect(await code({ ...bigger, consistency: proof }, store)).toBe('InconsistentCheckpoint');
    const state = await store.load();
    expect(state.evidence).toHaveLength(2);
    for (const e of state.evidence) {
      expect(e.kind).toBe('inconsistent-checkpoints');
      expect(e.first.note).toBe(bundle.tlogProof.checkpoint);
      expect(e.second.note).toBeDefined();
      expect(e.second.note).not.toBe(e.first.note);
    }
    // The checkpoint the client trusts did not move.
    expect(state.checkpoint?.root).toBe(toBase64(parseCheckpointRoot(bundle)));
  });

  it('starts from the release\'s minimum checkpoint', async () => {
    const { bundle } = await w.publish();
    const n = sizeOf(bundle);
    const root = w.validator.tiles.root(n - 1);
    const trust = { ...w.trust, minimum: { seq: 0, checkpoint: { size: n - 1, root } } };
    expect(await code(bundle, memoryStateStore(), trust)).toBe('ConsistencyProofMissing');
    expect(await code(w.withConsistency(bundle, n - 1), memoryStateStore(), trust)).toBe('ok');
    const wrong = { ...w.trust, minimum: { seq: 0, checkpoint: { size: n - 1, root: sha256(root) } } };
    const store = memoryStateStore();
    expect(await code(w.withConsistency(bundle, n - 1), store, wrong)).toBe('InconsistentCheckpoint');
    expect((await store.load()).evidence).toHaveLength(1);
  });
});

function parseCheckpointRoot(b: ParsedBundle): Uint8Array {
  return Buffer.from(parseNote(b.tlogProof.checkpoint).text.split('\n')[2]!, 'base64');
}
