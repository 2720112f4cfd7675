/**
 * Found in review: a commit that covers a batch closed before a ratchet must not erase the key of
 * the epoch the ratchet just retired (I3 must not turn into lost records, I4).
 */
import { describe, expect, it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HsmCore, type CloseBatchResult, type CommitResult } from '../src/hsm/core.js';
import type { RequestEnvelope } from '../src/protocol/channel.js';
import type { VaultRequest, VaultResponse } from '../src/protocol/messages.js';
import { softwarePlatform } from '../src/softhsm/platform.js';
import { opaqueReady, clientStartRegistration, clientFinishRegistration, clientStartLogin } from '../src/crypto/opaque.js';
import { sealRequest } from '../src/crypto/hpke.js';
import { channelInfo, requestAad } from '../src/protocol/channel.js';
import { accountTag, routingHint } from '../src/protocol/ids.js';
import { PROTOCOL_VERSION } from '../src/protocol/labels.js';
import { encodeRequest, decodeResponse } from '../src/protocol/messages.js';
import { MapNodeSource, proofNodes, treeRoot } from '../src/hsm/tree.js';
import { EPOCH_STATE_ID } from '../src/hsm/epoch.js';
import { decodeHsmSecrets } from '../src/hsm/keys.js';
import { logIdOf } from '../src/hsm/core.js';


/* eslint-disable @typescript-eslint/no-explicit-any */
describe('record epochs under pipelined commits', () => {
  it('keeps the previous epoch key until an entry closed in the current epoch shows it unused', async () => {
    await opaqueReady;
    let clock = 1_000_000;
    const dir = mkdtempSync(join(tmpdir(), 'rev-epoch-'));
    const plat = softwarePlatform(join(dir, 'hsm'), { now: () => clock });
    const core = HsmCore.boot(plat);
    const c = core.createFleet({ policy: { persistIntervalMs: 0, epochIntervalMs: 1000 } });
    if (c.type !== 'Created') throw new Error('create');
        const fleetId = c.fleetId; const keys = c.publicKeys;
    const ctx = { fleetId, logId: logIdOf(fleetId) };
    const nodes = new MapNodeSource();
    let top: Uint8Array | null = null;
    expect([core.captureNext([c.genesis]).type, core.persist().type, core.becomeLeader(null).type]).toEqual(['Ok', 'Unchanged', 'Ok']);

    async function seal(req: VaultRequest): Promise<{ env: RequestEnvelope; open(b: Uint8Array): Promise<VaultResponse> }> {
      const head = { version: PROTOCOL_VERSION, type: req.type, hint: routingHint(req.userId), tag: accountTag(req.userId) };
      const s = await sealRequest(keys.hpke, channelInfo(fleetId), requestAad(head), encodeRequest(req));
      return { env: { ...head, enc: s.enc, ciphertext: s.ciphertext }, open: async (b: Uint8Array) => decodeResponse(await s.openResponse(b)) };
    }
    function path(key: Uint8Array): Uint8Array[] { if (!top) return []; const p = proofNodes(treeRoot(ctx, top), key, nodes); return p.type === 'Proof' ? p.nodes : []; }
    function apply(env: RequestEnvelope): number {
      const o = core.openRequest(env);
      if (o.type !== 'Opened') throw new Error(JSON.stringify(o));
      const a = core.applyRequest(o.handle, path(o.recordId)); if (a.type !== 'Applied') throw new Error('apply ' + JSON.stringify(a));
      return o.handle;
    }
    function close(): Extract<CloseBatchResult, { type: 'Proposed' }> {
      const p = core.closeBatch(path(EPOCH_STATE_ID)); if (p.type !== 'Proposed') throw new Error('close ' + p.type);
      for (const a of p.added) nodes.put(a.hash, a.node);
      top = p.top; return p;
    }
    function captureCommit(ps: { entry: Uint8Array }[]): Extract<CommitResult, { type: 'Committed' }> {
      const cap = core.captureNext(ps.map((p) => p.entry)); if (cap.type !== 'Ok') throw new Error('cap ' + cap.type);
      core.persist();
      const stmt = core.statement();
      if (stmt.type !== 'Ok') throw new Error('statement');
      const st = stmt.statement;
      const cm = core.commit([st]);
      if (cm.type !== 'Committed') throw new Error(cm.type);
      return cm;
    }
    async function rt(req: VaultRequest): Promise<any> {
      const s = await seal(req); const h = apply(s.env); const p = close(); const cm = captureCommit([p]);
      const r = cm.released.find((x) => x.handle === h);
      if (!r || r.response.type !== 'Sealed') throw new Error('no response');
      return s.open(r.response.body);
    }
    // register a user under epoch 0
    const u = 'alice'; const pw = 'pw';
    const reg = clientStartRegistration(pw);
    const st = await rt({ type: 'RegisterStart', userId: u, registrationRequest: reg.request });
    const fin = clientFinishRegistration(pw, reg.state, st.registrationResponse, { client: u, server: Buffer.from(fleetId).toString('hex') }, 'insecure-fast-for-tests-only');
    const done = await rt({ type: 'RegisterFinish', userId: u, registrationRecord: fin.record, wrappedKey: new Uint8Array(60), maxGuesses: 10, state: st.state });
    expect(done.outcome).toBe('Ok');

    // schedule passes; two batches in flight: E1 (status, no ratchet), E2 (a write -> ratchet)
    clock += 2000;
    const s1 = await seal({ type: 'Status', userId: u, nonce: new Uint8Array(16) }); apply(s1.env); const e1 = close();
    const s2 = await seal({ type: 'RecoverStart', userId: u, ke1: clientStartLogin(pw).ke1 }); apply(s2.env); const e2 = close();
    expect(core.epochInfo()).toEqual({ epoch: 1, holdsPrevious: true });
    // certificate covering E1 only (or both) arrives
    const cm = captureCommit([e1]);
    expect(cm.type).toBe('Committed');
        // E1 was closed under epoch 0: its count says nothing about epoch 0's records now that 1 began.
        expect(core.epochInfo()).toEqual({ epoch: 1, holdsPrevious: true });
    const sec = decodeHsmSecrets(plat.secrets.read()!).fleet!;
    expect(sec.epoch).toBe(1);
        expect(sec.previousEpochKey).toBeDefined();
    // now try to use alice's record (sealed under epoch 0)
    captureCommit([e2]);
    const s3 = await seal({ type: 'RecoverStart', userId: u, ke1: clientStartLogin(pw).ke1 });
    const o = core.openRequest(s3.env);
    if (o.type !== 'Opened') throw new Error('open');
    const a = core.applyRequest(o.handle, path(o.recordId));
    expect(a).toEqual({ type: 'Applied' });
        expect(core.status().halted).toBeUndefined();
    const rs = core.reseal(o.recordId, path(o.recordId)); console.log('reseal:', rs.type);

  });
});
