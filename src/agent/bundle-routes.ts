/**
 * The agent's endpoints for validation bundles (DESIGN section 6):
 *
 *     POST /agent/v1/countersign   {statement}: the HSM countersigns a validated statement of its fleet
 *     PUT  /agent/v1/bundle        {bundle, log}: installs the fleet's bundle (operator tool)
 *     GET  /agent/v1/bundle[?consistency-from=N]: the bundle the front end relays to clients
 *     GET  /agent/v1/deployment    the public facts an evidence package records
 *
 * No user data crosses these: a bundle request carries at most a tree size.
 */
import type { FastifyPluginAsync } from 'fastify';
import { Type } from 'typebox';
import type { Logger } from 'pino';
import { toBase64, toHex } from '../crypto/bytes.js';
import { bundleToJson, MAX_BUNDLE_BYTES } from '../protocol/bundle.js';
import { BundleQuerySchema } from '../protocol/bundle-schema.js';
import { ProtocolError } from '../protocol/errors.js';
import { httpStatusOf } from '../protocol/http.js';
import { MAX_SIGNED_STATEMENT_BYTES, parseSignedStatement } from '../protocol/statement.js';
import type { Agent } from './agent.js';
import type { BundleStore } from './bundle.js';

const CountersignSchema = Type.Object({ statement: Type.String({ maxLength: MAX_SIGNED_STATEMENT_BYTES }) }, { additionalProperties: false });
const InstallSchema = Type.Object(
  { bundle: Type.Object({}, { additionalProperties: true }), log: Type.Optional(Type.String({ maxLength: 2048 })) },
  { additionalProperties: false },
);

function fail(code: ProtocolError['code'], message: string) {
  return { error: { code, message } };
}

/** A Fastify plugin: `app.register(bundleRoutes(agent, bundles, log))`. */
export function bundleRoutes(agent: Agent, bundles: BundleStore, log: Logger): FastifyPluginAsync {
  return async (app) => {
    app.post('/agent/v1/countersign', { schema: { body: CountersignSchema } }, async (req, reply) => {
      let signed;
      try {
        signed = parseSignedStatement((req.body as { statement: string }).statement);
      } catch (e) {
        return reply.code(400).send(fail('Malformed', (e as Error).message));
      }
      if (!signed.validatorSignature) return reply.code(400).send(fail('BadRequest', 'the statement must carry the validator\'s signature'));
      const r = agent.hsm.countersign(signed.text, signed.validatorSignature);
      switch (r.type) {
        case 'Countersigned':
          return { countersignature: toBase64(r.signature) };
        case 'NoFleet':
          return reply.code(503).send(fail('Unavailable', 'this HSM has no usable fleet'));
        case 'Malformed':
          return reply.code(400).send(fail('Malformed', r.message));
        case 'WrongFleet':
          return reply.code(421).send(fail('WrongFleet', 'the statement names another fleet'));
        case 'WrongKeys':
          return reply.code(400).send(fail('WrongFleet', 'the statement lists keys this fleet does not hold'));
        case 'WrongRoutes':
          return reply.code(400).send(fail('WrongFleet', 'the statement lists route ranges this fleet does not serve'));
      }
    });

    app.put('/agent/v1/bundle', { schema: { body: InstallSchema }, bodyLimit: MAX_BUNDLE_BYTES * 2 }, async (req, reply) => {
      const body = req.body as { bundle: unknown; log?: string };
      try {
        bundles.install(body.bundle, body.log);
      } catch (e) {
        const code = e instanceof ProtocolError ? e.code : 'Malformed';
        return reply.code(httpStatusOf(code)).send(fail(code, (e as Error).message));
      }
      return { ok: true };
    });

    app.get('/agent/v1/bundle', { schema: { querystring: BundleQuerySchema } }, async (req, reply) => {
      const q = req.query as { 'consistency-from'?: string };
      const from = q['consistency-from'] === undefined ? undefined : Number(q['consistency-from']);
      const b = await bundles.current(from);
      if (!b) return reply.code(404).send(fail('Unavailable', 'this fleet has no validation bundle yet'));
      return bundleToJson(b);
    });

    app.get('/agent/v1/deployment', async (_req, reply) => {
      if (!agent.hsm.publicKeys()) return reply.code(503).send(fail('Unavailable', 'this HSM has no fleet yet'));
      const keys = agent.publicKeys();
      const config = agent.fleetConfig();
      return {
        keys: { opaque: toBase64(keys.opaque), hpke: toBase64(keys.hpke), sign: toBase64(keys.sign) },
        routes: config.routes,
        members: config.members.map((m) => (toHex(m) === toHex(agent.hsm.memberId) ? { id: toHex(m), identityKey: toBase64(agent.hsm.identityPublicKey) } : { id: toHex(m) })),
        policy: { defaultMaxGuesses: config.policy.defaultMaxGuesses, reRegistrationLimit: config.policy.reRegistrationLimit, quorum: Math.floor(config.members.length / 2) + 1 },
      };
    });
    log.debug('bundle routes registered');
  };
}
