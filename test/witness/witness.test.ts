/** c2sp.org/tlog-witness `add-checkpoint`: every outcome of the spec, persistence and atomicity. */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pino from 'pino';
import { utf8 } from '../../src/crypto/bytes.js';
import { sha256 } from '../../src/crypto/sha256.js';
import { ProtocolError } from '../../src/protocol/errors.js';
import {
  SIGNATURE_TYPE_COSIGNATURE_V1,
  consistencyProof,
  formatCheckpoint,
  open,
  parseNote,
  rootFromLeafHashes,
  sign,
  subtreeReaderFromLeafHashes,
  type SignerKey,
} from '../../src/protocol/tlog/index.js';
import { Witness, formatAddCheckpoint, parseAddCheckpoint, MAX_PROOF_LINES } from '../../src/witness/witness.js';
import { buildWitnessServer } from '../../src/witness/server.js';
import { signer } from '../helpers/validator-world.js';

const ORIGIN = 'log.example/test';
const leaves = Array.from({ length: 40 }, (_, i) => sha256(utf8(`leaf ${i}`)));

async function checkpoint(log: SignerKey, size: number, root = rootFromLeafHashes(leaves.slice(0, size))): Promise<string> {
  return sign(formatCheckpoint({ origin: ORIGIN, treeSize: size, rootHash: root, extensions: [] }), [log]);
}

function proof(a: number, b: number): Uint8Array[] {
  return a === 0 || a === b ? [] : consistencyProof(a, b, subtreeReaderFromLeafHashes(leaves.slice(0, b)));
}

async function setup(dbPath = ':memory:') {
  const now = { t: 1_700_000_000 };
  const log = await signer(ORIGIN);
  const wkey = await signer('witness.example/w1', SIGNATURE_TYPE_COSIGNATURE_V1, () => now.t);
  const db = new Database(dbPath);
  const witness = new Witness(db, wkey, [{ origin: ORIGIN, keys: [log.verifier] }], () => now.t);
  const add = async (old: number, size: number, p = proof(old, size), cp?: string) => witness.addCheckpoint(formatAddCheckpoint({ oldSize: old, proof: p, checkpoint: cp ?? (await checkpoint(log, size)) }));
  return { now, log, wkey, db, witness, add };
}

describe('add-checkpoint', () => {
  it('cosigns a first checkpoint from old size 0, with a timestamped cosignature/v1', async () => {
    const { add, wkey, log, now } = await setup();
    const r = await add(0, 5);
    expect(r.type).toBe('Cosigned');
    if (r.type !== 'Cosigned') return;
    expect(r.body).toMatch(/^\u2014 witness\.example\/w1 [A-Za-z0-9+/]+=*\n$/);
    const cp = await checkpoint(log, 5);
    const opened = await open(`${cp}${r.body}`, [wkey.verifier]);
    expect(opened.verified[0]?.timestamp).toBe(now.t);
  });

  it('cosigns a checkpoint that a consistency proof joins to the last one, and moves on', async () => {
    const { add, witness } = await setup();
    expect((await add(0, 5)).type).toBe('Cosigned');
    expect((await add(5, 13)).type).toBe('Cosigned');
    expect(witness.latest(ORIGIN)?.size).toBe(13);
    expect((await add(13, 13)).type).toBe('Cosigned'); // same size and root: a fresh cosignature
  });

  it('409 with the latest size when old size is not the latest cosigned', async () => {
    const { add } = await setup();
    await add(0, 5);
    expect(await add(0, 8)).toMatchObject({ type: 'Conflict', latestSize: 5 });
    expect(await add(3, 8)).toMatchObject({ type: 'Conflict', latestSize: 5 });
  });

  it('409 for the same size with another root', async () => {
    const { add, log } = await setup();
    await add(0, 5);
    const forked = await checkpoint(log, 5, sha256(utf8('fork')));
    expect(await add(5, 5, [], forked)).toMatchObject({ type: 'Conflict', latestSize: 5 });
  });

  it('422 for a consistency proof that does not verify, and keeps the witness where it was', async () => {
    const { add, witness, db } = await setup();
    await add(0, 5);
    const p = proof(5, 9);
    expect((await add(5, 9, [...p.slice(0, -1), sha256(utf8('x'))])).type).toBe('InvalidProof');
    expect((await add(5, 9, p.slice(1))).type).toBe('InvalidProof');
    expect((await add(5, 9, [])).type).toBe('InvalidProof');
    expect(witness.latest(ORIGIN)?.size).toBe(5);
    expect((db.prepare('SELECT COUNT(*) AS n FROM witness_refusals').get() as { n: number }).n).toBe(3);
    expect((await add(5, 9, p)).type).toBe('Cosigned');
  });

  it('422 for a non-empty proof from size 0', async () => {
    const { add } = await setup();
    expect((await add(0, 5, [sha256(utf8('x'))])).type).toBe('InvalidProof');
  });

  it('400 for old size above the checkpoint size, and for malformed bodies', async () => {
    const { add, witness } = await setup();
    await add(0, 5);
    expect((await add(9, 8, [])).type).toBe('BadRequest');
    expect((await witness.addCheckpoint('old 01\n\nx')).type).toBe('BadRequest');
    expect((await witness.addCheckpoint('nothing')).type).toBe('BadRequest');
    expect((await witness.addCheckpoint(new Uint8Array([0xff, 0xfe]))).type).toBe('BadRequest');
  });

  it('404 for an unknown origin, 403 without a valid signature by the log\'s key', async () => {
    const { witness, log } = await setup();
    const other = await signer('other.example/log');
    const text = formatCheckpoint({ origin: 'other.example/log', treeSize: 1, rootHash: leaves[0]!, extensions: [] });
    expect((await witness.addCheckpoint(formatAddCheckpoint({ oldSize: 0, proof: [], checkpoint: await sign(text, [other]) }))).type).toBe('UnknownLog');
    const impostor = await signer(ORIGIN);
    const cp = await checkpoint(impostor, 3);
    expect((await witness.addCheckpoint(formatAddCheckpoint({ oldSize: 0, proof: [], checkpoint: cp }))).type).toBe('Forbidden');
    const good = await checkpoint(log, 3);
    const n = parseNote(good);
    const bad = good.replace(/ ([A-Za-z0-9+/]{10})/, (_m, s: string) => ` ${s.startsWith('A') ? 'B' : 'A'}${s.slice(1)}`);
    expect(bad).not.toBe(good);
    expect(n.signatures).toHaveLength(1);
    expect((await witness.addCheckpoint(formatAddCheckpoint({ oldSize: 0, proof: [], checkpoint: bad }))).type).toBe('Forbidden');
  });

  it('checks and updates atomically: of two requests from one old size, one is cosigned, one gets 409', async () => {
    const { add } = await setup();
    await add(0, 5);
    const [a, b] = await Promise.all([add(5, 10), add(5, 12)]);
    expect([a.type, b.type].sort()).toEqual(['Conflict', 'Cosigned']);
  });

  it('persists the latest checkpoint across restarts', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'bkv-witness-')), 'w.sqlite');
    const first = await setup(path);
    await first.add(0, 7);
    first.db.close();
    const again = new Witness(new Database(path), first.wkey, [{ origin: ORIGIN, keys: [first.log.verifier] }], () => 0);
    expect(again.latest(ORIGIN)?.size).toBe(7);
  });
});

describe('the add-checkpoint body codec', () => {
  it('round-trips', async () => {
    const log = await signer(ORIGIN);
    const cp = await checkpoint(log, 9);
    await fc.assert(
      fc.property(fc.nat(1e15), fc.array(fc.uint8Array({ minLength: 32, maxLength: 32 }), { maxLength: MAX_PROOF_LINES }), (oldSize, p) => {
        const r = parseAddCheckpoint(formatAddCheckpoint({ oldSize, proof: p, checkpoint: cp }));
        expect(r.oldSize).toBe(oldSize);
        expect(r.proof).toEqual(p);
        expect(r.checkpoint).toBe(cp);
      }),
    );
    expect(() => parseAddCheckpoint(formatAddCheckpoint({ oldSize: 1, proof: Array.from({ length: MAX_PROOF_LINES + 1 }, () => leaves[0]!), checkpoint: cp }))).toThrow(ProtocolError);
  });

  it('never crashes on random input: only a Malformed error', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.uint8Array({ maxLength: 300 }).map((b) => b as Uint8Array | string), fc.string().map((s) => `old 3\n${s}\n\nlog\n3\n${s}\n`)), (input) => {
        try {
          parseAddCheckpoint(input);
        } catch (e) {
          expect(e).toBeInstanceOf(ProtocolError);
        }
      }),
    );
  });
});

describe('the HTTP interface', () => {
  it('answers with the spec\'s status codes and the text/x.tlog.size body on 409', async () => {
    const { witness, log } = await setup();
    const app = buildWitnessServer(witness, pino({ level: 'silent' }));
    const post = async (body: string) => app.inject({ method: 'POST', url: '/add-checkpoint', payload: body, headers: { 'content-type': 'text/plain' } });
    const r1 = await post(formatAddCheckpoint({ oldSize: 0, proof: [], checkpoint: await checkpoint(log, 4) }));
    expect(r1.statusCode).toBe(200);
    expect(r1.body.startsWith('\u2014 witness.example/w1 ')).toBe(true);
    const r2 = await post(formatAddCheckpoint({ oldSize: 0, proof: [], checkpoint: await checkpoint(log, 6) }));
    expect(r2.statusCode).toBe(409);
    expect(r2.headers['content-type']).toBe('text/x.tlog.size');
    expect(r2.body).toBe('4\n');
    const r3 = await post(formatAddCheckpoint({ oldSize: 4, proof: [leaves[0]!], checkpoint: await checkpoint(log, 6) }));
    expect(r3.statusCode).toBe(422);
    expect((await post('garbage')).statusCode).toBe(400);
    const other = await signer('nobody.example/log');
    const unknown = await sign(formatCheckpoint({ origin: 'nobody.example/log', treeSize: 1, rootHash: leaves[0]!, extensions: [] }), [other]);
    expect((await post(formatAddCheckpoint({ oldSize: 0, proof: [], checkpoint: unknown }))).statusCode).toBe(404);
    const impostor = await signer(ORIGIN);
    expect((await post(formatAddCheckpoint({ oldSize: 4, proof: proof(4, 6), checkpoint: await checkpoint(impostor, 6) }))).statusCode).toBe(403);
    // Any content type is read as the spec's text body.
    const r4 = await app.inject({ method: 'POST', url: '/add-checkpoint', payload: formatAddCheckpoint({ oldSize: 4, proof: proof(4, 6), checkpoint: await checkpoint(log, 6) }), headers: { 'content-type': 'application/octet-stream' } });
    expect(r4.statusCode).toBe(200);
    const big = await app.inject({ method: 'POST', url: '/add-checkpoint', payload: 'x'.repeat(70_000), headers: { 'content-type': 'text/plain' } });
    expect(big.statusCode).toBe(413);
    await app.close();
  });
});
