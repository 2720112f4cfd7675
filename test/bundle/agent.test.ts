/**
 * The fleet's side of bundles over HTTP: the agent's countersign, install and bundle endpoints,
 * the proof refresh from the validator's tiles, consistency proofs on request, and the front
 * end's relay; then the SDK in bundle mode against the real agent (register and recover).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { BundleStore } from '../../src/agent/bundle.js';
import { buildAgentServer } from '../../src/agent/server.js';
import { buildFrontend } from '../../src/frontend/server.js';
import { openSessions } from '../../src/frontend/auth.js';
import { fetchBundle, memoryStateStore, vaultFromBundle, verifyBundle } from '../../src/client/bundle.js';
import { httpTransport } from '../../src/client/transport.js';
import { bundleToJson, parseBundleJson } from '../../src/protocol/bundle.js';
import { parseCheckpoint, parseNote } from '../../src/protocol/tlog/index.js';
import { assembleBundle, installBundle, requestCountersignature } from '../../src/validator/publish.js';
import { buildValidatorServer } from '../../src/validator/server.js';
import { startSystem, type InProcessSystem } from '../helpers/system.js';
import { fleetOf, makeFleet, makeWorld, type Fleet, type World } from '../helpers/validator-world.js';

const silent = pino({ level: 'silent' });
let w: World;
let sys: InProcessSystem;
let fleet: Fleet;
let bundles: BundleStore;
let agentApp: ReturnType<typeof buildAgentServer>;
let validatorApp: ReturnType<typeof buildValidatorServer>;
let frontApp: ReturnType<typeof buildFrontend>;
let agentUrl: string;
let logUrl: string;
let frontUrl: string;

beforeAll(async () => {
  w = await makeWorld();
  sys = await startSystem();
  fleet = fleetOf(sys.agent.hsm);
  bundles = new BundleStore({ keys: () => sys.agent.publicKeys(), log: silent, refreshMs: 0 });
  agentApp = buildAgentServer(sys.agent, silent, { bundles });
  agentUrl = await agentApp.listen({ host: '127.0.0.1', port: 0 });
  validatorApp = buildValidatorServer(w.validator, silent);
  logUrl = await validatorApp.listen({ host: '127.0.0.1', port: 0 });
  frontApp = buildFrontend({ agents: [agentUrl], sessions: openSessions, ke1PerTagPerDay: 10, log: silent });
  frontUrl = await frontApp.listen({ host: '127.0.0.1', port: 0 });
});
afterAll(async () => {
  await frontApp?.close();
  await agentApp?.close();
  await validatorApp?.close();
  await sys?.close();
  await w?.close();
});

const size = (proofCheckpoint: string): number => parseCheckpoint(parseNote(proofCheckpoint).text).treeSize;

describe('the agent\'s bundle endpoints', () => {
  it('has no bundle before one is installed (404 through the front end)', async () => {
    const r = await fetch(`${frontUrl}/v1/bundle`);
    expect(r.status).toBe(404);
    expect(await r.json()).toMatchObject({ error: { code: 'Unavailable' } });
  });

  it('countersigns its own validated statement, installs the bundle and serves it', async () => {
    const { submitted } = await w.publish({ fleet });
    const cs = await requestCountersignature(agentUrl, submitted.entry);
    const bundle = assembleBundle(submitted, cs);
    await installBundle(agentUrl, bundle, logUrl);
    const served = await fetchBundle(frontUrl, undefined);
    expect(served.statement).toBe(bundle.statement);
    await verifyBundle(served, w.trust, memoryStateStore(), { now: w.now.t });
  });

  it('refuses to countersign another fleet\'s statement, or one without the validator\'s signature', async () => {
    const other = await makeFleet(w.clock);
    const { submitted } = await w.publish({ fleet: other });
    await expect(requestCountersignature(agentUrl, submitted.entry)).rejects.toMatchObject({ code: 'WrongFleet' });
    const operatorOnly = submitted.entry.split('\n').slice(0, -2).join('\n') + '\n';
    await expect(requestCountersignature(agentUrl, operatorOnly)).rejects.toMatchObject({ code: 'BadRequest' });
    await expect(requestCountersignature(agentUrl, 'not a statement')).rejects.toMatchObject({ code: 'Malformed' });
  });

  it('refuses to install a bundle that is not its fleet\'s, or not countersigned by it', async () => {
    const other = await makeFleet(w.clock);
    const { bundle } = await w.publish({ fleet: other });
    await expect(installBundle(agentUrl, bundle, logUrl)).rejects.toMatchObject({ code: 'WrongFleet' });
    const { submitted } = await w.publish({ fleet });
    const forged = assembleBundle(submitted, new Uint8Array(64));
    await expect(installBundle(agentUrl, forged, logUrl)).rejects.toMatchObject({ code: 'BadRequest' });
    const r = await fetch(`${agentUrl}/agent/v1/bundle`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ bundle: {}, log: 'ftp://x' }) });
    expect(r.status).toBe(400);
  });

  it('refreshes the proof to the log\'s latest checkpoint, read from its tiles', async () => {
    const before = await fetchBundle(frontUrl, undefined);
    const n0 = size(before.tlogProof.checkpoint);
    await w.publish(); // the log grows by an entry of the world's own fleet
    await w.publish();
    const after = await fetchBundle(frontUrl, undefined);
    expect(after.statement).toBe(before.statement);
    expect(size(after.tlogProof.checkpoint)).toBe(n0 + 2);
    await verifyBundle(after, w.trust, memoryStateStore(), { now: w.now.t });
  });

  it('adds a consistency proof from the size the client holds, in either direction', async () => {
    const store = memoryStateStore();
    const first = await fetchBundle(frontUrl, undefined);
    await verifyBundle(first, w.trust, store, { now: w.now.t });
    const n = size(first.tlogProof.checkpoint);
    await w.publish();
    const grown = await fetchBundle(frontUrl, n);
    expect(grown.consistency).toMatchObject({ size1: n, size2: n + 1 });
    await verifyBundle(grown, w.trust, store, { now: w.now.t });
    // A client ahead of the bundle's checkpoint (it saw a larger one elsewhere).
    const ahead = await fetch(`${agentUrl}/agent/v1/bundle?consistency-from=${n + 1}`);
    expect(parseBundleJson(await ahead.json()).consistency?.size2).toBe(n + 1);
    for (const bad of ['-1', '1e3', 'x', '99999999999999999']) expect((await fetch(`${frontUrl}/v1/bundle?consistency-from=${bad}`)).status).toBe(400);
  });

  it('the SDK in bundle mode: verify, then register and recover through the real agent', async () => {
    const bundle = bundleToJson(await fetchBundle(frontUrl, undefined));
    const { vault, verified } = await vaultFromBundle({ bundle, trust: w.trust, store: memoryStateStore(), transport: httpTransport({ server: frontUrl }), now: w.now.t, keyStretching: 'insecure-fast-for-tests-only' });
    expect(verified.fleet.fleetId).toEqual(sys.fleet.fleetId);
    const { key } = await vault.register('carol', 'pw');
    expect((await vault.recover('carol', 'pw')).key).toEqual(key);
  });
});
