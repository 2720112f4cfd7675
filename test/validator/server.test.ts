/**
 * The validator over HTTP: the log's tlog-tiles endpoints with their exact paths, encodings and
 * content types (readable by any C2SP verifier with only the vkeys), the submission endpoint's
 * status codes, and publication that waits for the witness quorum.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { toBase64 } from '../../src/crypto/bytes.js';
import {
  formatTilePath,
  inclusionProofFromTiles,
  leafHash,
  openCheckpoint,
  parseEntryBundle,
  parseTlogProof,
  parseVerifierKey,
  rootHashFromTiles,
  sign,
  verifyInclusion,
} from '../../src/protocol/tlog/index.js';
import { parseSignedStatement } from '../../src/protocol/statement.js';
import { buildSignedStatement } from '../../src/validator/publish.js';
import { buildValidatorServer } from '../../src/validator/server.js';
import { DAY, MEASUREMENT, makeWorld, signer, type World } from '../helpers/validator-world.js';

let w: World;
let app: ReturnType<typeof buildValidatorServer>;
beforeAll(async () => {
  w = await makeWorld();
  app = buildValidatorServer(w.validator, pino({ level: 'silent' }));
  for (let i = 0; i < 3; i++) await w.publish();
});
afterAll(async () => {
  await app?.close();
  await w?.close();
});

const get = (url: string) => app.inject({ method: 'GET', url });

async function nextSubmission(signerKey = w.operator) {
  const head = w.validator.chainHead();
  return buildSignedStatement(signerKey, {
    deployment: w.fleet.deployment,
    measurement: MEASUREMENT,
    ...(head ? { previous: { seq: head.seq, entry: head.entry } } : {}),
    notBefore: w.now.t,
    notAfter: w.now.t + 7 * DAY,
  });
}

describe('the log, as a C2SP verifier reads it', () => {
  it('GET /checkpoint: text/plain; charset=utf-8, signed by the log key and cosigned', async () => {
    const r = await get('/checkpoint');
    expect(r.statusCode).toBe(200);
    expect(r.headers['content-type']).toBe('text/plain; charset=utf-8');
    const [logVkey] = (await get('/validator/v1/keys')).body.trim().split('\n');
    const opened = await openCheckpoint(r.body, { origin: w.trust.log.origin, log: parseVerifierKey(logVkey!), witnesses: [...w.trust.witnesses] });
    expect(opened.checkpoint.treeSize).toBe(3);
    expect(opened.cosignatures).toHaveLength(2);
  });

  it('tiles and entry bundles at their spec paths rebuild the root and prove every entry', async () => {
    const size = 3;
    const fetchTile = async (t: { level: number; index: number; width: number }) => {
      const r = await get(`/${formatTilePath({ kind: 'hash', ...t })}`);
      expect(r.statusCode).toBe(200);
      expect(r.headers['content-type']).toBe('application/octet-stream');
      return new Uint8Array(r.rawPayload);
    };
    const root = await rootHashFromTiles(size, fetchTile);
    const cp = await openCheckpoint((await get('/checkpoint')).body, { origin: w.trust.log.origin, log: w.trust.log.key });
    expect(root).toEqual(cp.checkpoint.rootHash);
    const bundle = await get('/tile/entries/000.p/3');
    expect(bundle.statusCode).toBe(200);
    const entries = parseEntryBundle(new Uint8Array(bundle.rawPayload), 3);
    for (let i = 0; i < 3; i++) {
      // Entries are the signed statements, operator first, then the validator.
      const s = parseSignedStatement(entries[i]!);
      expect(s.statement.seq).toBe(i + 1);
      verifyInclusion(i, size, leafHash(entries[i]!), await inclusionProofFromTiles(i, size, fetchTile), root);
    }
  });

  it('404 for tiles that are empty, unpublished or not at a canonical path', async () => {
    for (const path of ['/tile/0/000.p/4', '/tile/0/001.p/1', '/tile/1/000.p/1', '/tile/0/000', '/tile/0/0', '/tile/00/000.p/3', '/tile/0/x000/000.p/3', '/tile/0/000.p/03', '/tile/0/000.p/256', '/tile/64/000.p/1', '/tile/entries/000.p/4', '/tile/entries/000.p/0', '/tile/x']) {
      expect((await get(path)).statusCode, path).toBe(404);
    }
    expect((await get('/tile/0/000.p/2')).statusCode).toBe(200); // an older size's partial tile
  });
});

describe('the submission endpoint', () => {
  const submit = (payload: unknown) => app.inject({ method: 'POST', url: '/validator/v1/submit', payload: payload as Record<string, unknown> });

  it('logs an operator\'s statement and answers with the entry and a tlog-proof', async () => {
    const { note, evidence } = await nextSubmission();
    const r = await submit({ statement: note, evidence: toBase64(evidence) });
    expect(r.statusCode).toBe(200);
    const body = r.json<{ entry: string; index: number; proof: string }>();
    expect(body.index).toBe(3);
    const p = parseTlogProof(body.proof);
    const cp = await openCheckpoint(p.checkpoint, { origin: w.trust.log.origin, log: w.trust.log.key });
    verifyInclusion(p.index, cp.checkpoint.treeSize, leafHash(new TextEncoder().encode(body.entry)), p.proof, cp.checkpoint.rootHash);
    const ev = await get(`/validator/v1/evidence/${Buffer.from(parseSignedStatement(body.entry).statement.evidence).toString('hex')}`);
    expect(new Uint8Array(ev.rawPayload)).toEqual(evidence);
  });

  it('accepts only the operator\'s key (401), and maps each refusal to its status', async () => {
    const stranger = await signer('stranger.example/op');
    const bad = await nextSubmission(stranger);
    const r = await submit({ statement: bad.note, evidence: toBase64(bad.evidence) });
    expect(r.statusCode).toBe(401);
    expect(r.json()).toMatchObject({ error: { code: 'UnknownOperator' } });
    const { note } = await nextSubmission();
    expect((await submit({ statement: note })).json()).toMatchObject({ error: { code: 'EvidenceMissing' } });
    expect((await submit({ statement: note })).statusCode).toBe(422);
    expect((await submit({ statement: note, evidence: '***' })).statusCode).toBe(400);
    expect((await submit({ statement: note, extra: 1 })).statusCode).toBe(400);
    expect((await submit({ statement: 'x'.repeat(9000) })).statusCode).toBe(400);
    const big = await app.inject({ method: 'POST', url: '/validator/v1/submit', payload: JSON.stringify({ statement: 'x', evidence: 'A'.repeat(200_000) }), headers: { 'content-type': 'application/json' } });
    expect(big.statusCode).toBe(413);
    const head = w.validator.chainHead()!;
    const dup = await sign(parseSignedStatement(head.entry).text.replace(/^not-after .*$/m, 'not-after 2099-01-01T00:00:00Z'), [w.operator]);
    expect((await submit({ statement: dup, evidence: toBase64(new Uint8Array(1)) })).statusCode).toBe(409);
  });
});

describe('publication waits for the witness quorum', () => {
  it('refuses to publish with too few witnesses (503 WitnessQuorum), and publishes once they are back', async () => {
    const before = (await get('/checkpoint')).body;
    w.down.add(1);
    const { note, evidence } = await nextSubmission();
    const r = await app.inject({ method: 'POST', url: '/validator/v1/submit', payload: { statement: note, evidence: toBase64(evidence) } });
    expect(r.statusCode).toBe(503);
    expect(r.json()).toMatchObject({ error: { code: 'WitnessQuorum' } });
    // The statement is in the tree, but no checkpoint with it is served.
    expect((await get('/checkpoint')).body).toBe(before);
    w.down.delete(1);
    // Witness 0 cosigned the unpublished size; the validator catches it up (409, then retry).
    const again = await app.inject({ method: 'POST', url: '/validator/v1/submit', payload: { statement: note, evidence: toBase64(evidence) } });
    expect(again.statusCode).toBe(200);
    expect((await get('/checkpoint')).body).not.toBe(before);
  });

  it('re-cosigns the same size for fresh witness timestamps', async () => {
    const a = w.validator.latest()!;
    w.now.t += 3 * DAY;
    const b = await w.validator.publish(true);
    expect(b.size).toBe(a.size);
    expect(b.note).not.toBe(a.note);
    const opened = await openCheckpoint(b.note, { origin: w.trust.log.origin, log: w.trust.log.key, witnesses: [...w.trust.witnesses] });
    expect(opened.cosignatures.every((c) => c.timestamp === w.now.t)).toBe(true);
  });
});
