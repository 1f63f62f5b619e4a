import { Bucket } from '../../services/ledger/client/index.js';
import type { LedgerClient } from '../../services/ledger/client/index.js';
import type { PlannedCommand } from './plan-import.js';

export interface ImportReport {
  commands: number;
  written: number;
  replayed: number;
  credits: bigint;
}

const buckets = { SUBSCRIPTION: Bucket.BUCKET_SUBSCRIPTION, BONUS: Bucket.BUCKET_BONUS, PURCHASED: Bucket.BUCKET_PURCHASED };

/**
 * Sends the planned commands through the ledger's gRPC API, `inFlightMax` at a time. The first
 * failure stops the import (what was written stays, and a rerun continues where it stopped,
 * since every key is derived from the legacy ids).
 */
export async function runImport(
  ledger: LedgerClient,
  commands: readonly PlannedCommand[],
  inFlightMax = 32,
  onProgress?: (done: number, total: number) => void,
): Promise<ImportReport> {
  const report: ImportReport = { commands: commands.length, written: 0, replayed: 0, credits: 0n };
  let next = 0;
  let done = 0;
  let failure: unknown = null;
  const worker = async () => {
    while (failure === null && next < commands.length) {
      const command = commands[next++]!;
      try {
        const response =
          command.method === 'grant'
            ? await ledger.grant({ ...command.request, bucket: buckets[command.request.bucket] })
            : command.method === 'purchase'
              ? await ledger.purchase({ ...command.request, bucket: Bucket.BUCKET_PURCHASED })
              : await ledger.renewSubscription(command.request);
        if (response.replayed) report.replayed += 1;
        else report.written += 1;
        report.credits += command.request.credits;
      } catch (error) {
        failure ??= new Error(`${command.request.idempotencyKey}: ${(error as Error).message}`, { cause: error });
      }
      done += 1;
      if (done % 1000 === 0) onProgress?.(done, commands.length);
    }
  };
  await Promise.all(Array.from({ length: Math.min(inFlightMax, commands.length) }, worker));
  if (failure !== null) throw failure;
  return report;
}
