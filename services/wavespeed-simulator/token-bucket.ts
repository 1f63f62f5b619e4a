/**
 * A token bucket: `capacity` tokens, refilled continuously at `ratePerMin`. `take()` either
 * takes one token or says how long until one is available (for a 429's Retry-After).
 */
export class TokenBucket {
  #tokens: number;
  #lastMs: number;

  constructor(
    private readonly ratePerMin: number,
    private readonly capacity: number,
    private readonly nowMs: () => number = Date.now,
  ) {
    this.#tokens = capacity;
    this.#lastMs = nowMs();
  }

  /** `{ok: true}` and one token fewer, or `{ok: false, retryAfterMs}` and nothing taken. */
  take(): { ok: true } | { ok: false; retryAfterMs: number } {
    const now = this.nowMs();
    const perMs = this.ratePerMin / 60_000;
    this.#tokens = Math.min(this.capacity, this.#tokens + (now - this.#lastMs) * perMs);
    this.#lastMs = now;
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return { ok: true };
    }
    return { ok: false, retryAfterMs: Math.ceil((1 - this.#tokens) / perMs) };
  }
}
