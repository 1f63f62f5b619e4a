import { prepareTemplate } from './test-db.js';

/** Vitest global setup: one migrated template database per test run. */
export default async function setup(): Promise<void> {
  await prepareTemplate();
}
