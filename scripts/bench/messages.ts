import { ConsumeRequest, ConsumeResponse } from '../../services/ledger/client/index.js';
import { userName } from './users.js';

/**
 * What the ledger answers to a bench Consume: an entry id in the hundreds of thousands and one
 * allocation from a lot whose id is in the tens of thousands. The no-op server sends these
 * bytes, so that both servers answer messages of the same size.
 */
export function representativeConsumeResponse(): Buffer {
  return Buffer.from(
    ConsumeResponse.encode({ entryId: 123_456n, allocations: [{ lotId: 10_001n, credits: 1n }], replayed: false }).finish(),
  );
}

/** The size of a bench Consume request as the client encodes it, for the report. */
export function consumeRequestBytes(keyPrefix: string): number {
  return ConsumeRequest.encode(
    ConsumeRequest.fromPartial({ idempotencyKey: `${keyPrefix}:123456`, userId: userName(1_234), credits: 1n }),
  ).finish().length;
}
