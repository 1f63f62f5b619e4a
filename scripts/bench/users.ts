/**
 * The bench's user population: u00000 … u09999 by default. Names are fixed-width so that every
 * Consume request of a scenario has the same size on the wire.
 */
export function userName(index: number): string {
  return `u${index.toString().padStart(5, '0')}`;
}

/** The one user that consume_hot_user and the baseline put all their load on. */
export const hotUser = 'hot-user';

/** Credits granted to each user before the scenarios: enough that no Consume is ever refused. */
export const creditsPerUser = 1_000_000_000n;
export const creditsForHotUser = 1_000_000_000_000n;

/** The user of the *_spent_lots scenarios: 1,000 spent lots of one credit, then one large live lot. */
export const spentLotsUser = 'spent-user';
export const spentLotsCount = 1_000;

/**
 * consume_poisoned: one call in this many carries an idempotency key PostgreSQL rejects (a
 * trigger the bench installs for that scenario), so its batch fails and is split (issue 7 item 4).
 */
export const poisonEvery = 100;
export const poisonSuffix = ':poison';
