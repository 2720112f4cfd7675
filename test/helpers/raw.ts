/** Sends hand-built vault requests, sealed like the SDK seals them, for hostile tests. */
import { sealRequest } from '../../src/crypto/hpke.js';
import { channelInfo, requestAad, type RequestEnvelope } from '../../src/protocol/channel.js';
import { accountTag, routingHint } from '../../src/protocol/ids.js';
import { PROTOCOL_VERSION } from '../../src/protocol/labels.js';
import { decodeResponse, encodeRequest, type VaultRequest, type VaultResponse } from '../../src/protocol/messages.js';
import type { PinnedFleet } from '../../src/protocol/fleet.js';
import type { Transport } from '../../src/client/transport.js';

export async function sealEnvelope(fleet: PinnedFleet, req: VaultRequest): Promise<{ env: RequestEnvelope; open(body: Uint8Array): Promise<VaultResponse> }> {
  const head = { version: PROTOCOL_VERSION, type: req.type, hint: routingHint(req.userId), tag: accountTag(req.userId) };
  const sealed = await sealRequest(fleet.keys.hpke, channelInfo(fleet.fleetId), requestAad(head), encodeRequest(req));
  return { env: { ...head, enc: sealed.enc, ciphertext: sealed.ciphertext }, open: async (b) => decodeResponse(await sealed.openResponse(b)) };
}

/** One request through a transport; a transport-level error comes back as `{ error }`. */
export async function rawCall(fleet: PinnedFleet, transport: Transport, req: VaultRequest): Promise<VaultResponse | { error: string }> {
  const s = await sealEnvelope(fleet, req);
  const r = await transport.send(s.env);
  if (r.type === 'Error') return { error: r.code };
  return s.open(r.body);
}
