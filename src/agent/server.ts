/** The agent's HTTP endpoint: the front end forwards sealed envelopes here; peers ask for statements. */
import Fastify, { type FastifyBaseLogger } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { Logger } from 'pino';
import { fromBase64, toBase64, toHex } from '../crypto/bytes.js';
import { ProtocolError } from '../protocol/errors.js';
import { envelopeFromJson, httpStatusOf } from '../protocol/http.js';
import { makeTrustFile } from '../protocol/fleet.js';
import { EnvelopeSchema, STRICT_AJV } from '../protocol/schemas.js';
import { statementToJson, type Agent } from './agent.js';
import { bundleRoutes } from './bundle-routes.js';
import type { BundleStore } from './bundle.js';

const B64_32 = Type.String({ pattern: '^[A-Za-z0-9+/]{43}=$' });
const IdentitySchema = Type.Object({ signPublic: B64_32, wrapPublic: B64_32 }, { additionalProperties: false });

export function buildAgentServer(agent: Agent, log: Logger, opts: { bundles?: BundleStore } = {}) {
  const app = Fastify({ loggerInstance: log as FastifyBaseLogger, bodyLimit: 16 * 1024, disableRequestLogging: true, ajv: STRICT_AJV }).withTypeProvider<TypeBoxTypeProvider>();
  app.setNotFoundHandler((_req, reply) => reply.code(404).send({ error: { code: 'BadRequest', message: 'no such endpoint' } }));
  app.setErrorHandler((err: { validation?: unknown; statusCode?: number; code?: string; message?: string }, _req, reply) => {
    if (err.validation) return reply.code(400).send({ error: { code: 'Malformed', message: 'request does not match the schema' } });
    if (err.statusCode === 413) return reply.code(413).send({ error: { code: 'TooLarge', message: 'request too large' } });
    // Bad JSON, a wrong content type and the like are the caller's error, never an internal one (I8).
    if (err.statusCode === 415) return reply.code(400).send({ error: { code: 'Malformed', message: 'expected application/json' } });
    if (err.statusCode && err.statusCode < 500) return reply.code(400).send({ error: { code: 'Malformed', message: 'bad request' } });
    if (err instanceof ProtocolError) return reply.code(httpStatusOf(err.code)).send({ error: { code: err.code, message: err.message } });
    return reply.code(500).send({ error: { code: 'Internal', message: 'internal error' } });
  });

  app.post('/agent/v1/request', { schema: { body: EnvelopeSchema } }, async (req, reply) => {
    let env;
    try {
      env = envelopeFromJson(req.body);
    } catch (e) {
      const code = e instanceof ProtocolError ? e.code : 'Malformed';
      return reply.code(httpStatusOf(code)).send({ error: { code, message: (e as Error).message } });
    }
    const r = await agent.submit(env);
    if (r.type === 'Sealed') return { ct: toBase64(r.body) };
    return reply.code(httpStatusOf(r.code)).send({ error: { code: r.code, message: r.message } });
  });

  // Peers: this member's statement for its persisted position (MACed by the HSM).
  app.post('/agent/v1/statement', { schema: { body: Type.Object({ index: Type.Integer({ minimum: 0 }) }, { additionalProperties: false }) } }, async (req, reply) => {
    const s = await agent.statementFor(req.body.index);
    if (!s) return reply.code(503).send({ error: { code: 'Unavailable', message: 'no statement available' } });
    return statementToJson(s);
  });

  // Key ceremony (DESIGN section 7). The HSM enforces who may receive keys, and when.
  app.get('/agent/v1/identity', async () => {
    const id = agent.hsm.identity();
    return { memberId: toHex(id.memberId), signPublic: toBase64(id.signPublic), wrapPublic: toBase64(id.wrapPublic), hasFleet: agent.hsm.publicKeys() !== undefined };
  });

  // Until the ceremony checks vendor attestations of member identities (DESIGN section 7), only
  // the host itself may run it: from anywhere else, an attacker could list its own key as a member.
  const loopbackOnly = (ip: string): boolean => ip === '127.0.0.1' || ip === '::1' || ip === '::ffff:127.0.0.1';
  app.addHook('onRequest', async (req, reply) => {
    if (req.url.startsWith('/agent/v1/ceremony/') && !loopbackOnly(req.ip)) {
      return reply.code(403).send({ error: { code: 'Unauthorized', message: 'the key ceremony runs from the HSM host only' } });
    }
  });

  app.post('/agent/v1/ceremony/create', { schema: { body: Type.Object({ members: Type.Array(IdentitySchema, { minItems: 1, maxItems: 15 }) }, { additionalProperties: false }) } }, async (req) => {
    const members = req.body.members.map((m) => ({ signPublic: fromBase64(m.signPublic), wrapPublic: fromBase64(m.wrapPublic) }));
    const r = await agent.createFleet(members);
    await agent.activate();
    return { fleetId: toHex(r.fleetId), genesis: toBase64(r.genesis), wrapped: r.wrapped.map((w) => ({ signPublic: toBase64(w.member.signPublic), wrapPublic: toBase64(w.member.wrapPublic), blob: toBase64(w.blob) })) };
  });

  app.post('/agent/v1/ceremony/join', { schema: { body: Type.Object({ blob: Type.String({ maxLength: 4096 }), genesis: Type.String({ maxLength: 1024 }) }, { additionalProperties: false }) } }, async (req) => {
    await agent.joinFleet(fromBase64(req.body.blob), fromBase64(req.body.genesis));
    await agent.activate();
    return { ok: true };
  });

  // Validation bundles (DESIGN section 6): countersign, install, serve.
  if (opts.bundles) void app.register(bundleRoutes(agent, opts.bundles, log));

  app.get('/agent/v1/fleet', async (_req, reply) => {
    const keys = agent.hsm.publicKeys();
    if (!keys) return reply.code(503).send({ error: { code: 'Unavailable', message: 'this HSM holds no fleet yet' } });
    return makeTrustFile(keys, agent.fleetConfig().routes);
  });

  app.get('/agent/v1/status', async () => {
    const s = agent.hsm.status();
    const pos = (p?: { index: number; hash: Uint8Array }) => (p ? { index: p.index, hash: toHex(p.hash) } : null);
    return { member: toHex(s.memberId), fleetId: s.fleetId ? toHex(s.fleetId) : null, leader: s.leader, active: agent.isActive, captured: pos(s.captured), persisted: pos(s.persisted), committed: pos(s.committed), halted: s.halted ?? null, stats: agent.stats };
  });

  app.get('/healthz', async (_req, reply) => {
    const s = agent.hsm.status();
    if (s.halted || !agent.isActive) return reply.code(503).send({ ok: false, reason: s.halted ? 'halted' : 'no fleet yet' });
    return { ok: true, leader: s.leader };
  });
  return app;
}
