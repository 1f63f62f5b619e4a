/**
 * A latency histogram with logarithmic buckets, each 2% wider than the previous one. Client
 * processes fill one each and send it to the parent, which merges them; a percentile read back
 * is within about 1% of the true value. A fixed bucket array keeps the memory bounded however
 * many calls a scenario makes, and merging two client processes is a plain element-wise sum.
 */
const growth = 1.02;
const logGrowth = Math.log(growth);
/** 1 µs … about 140 s: enough for any call the bench waits for (its deadline is shorter). */
const bucketCount = 950;

export class LatencyHistogram {
  readonly counts: Uint32Array;
  total = 0;

  constructor(counts?: readonly number[]) {
    this.counts = new Uint32Array(bucketCount);
    if (counts) {
      counts.forEach((c, i) => {
        if (i < bucketCount) this.counts[i] = c;
      });
      this.total = counts.reduce((s, c) => s + c, 0);
    }
  }

  /** Records one latency given in microseconds. */
  record(micros: number): void {
    const index = micros <= 1 ? 0 : Math.min(bucketCount - 1, Math.ceil(Math.log(micros) / logGrowth));
    this.counts[index] = (this.counts[index] ?? 0) + 1;
    this.total += 1;
  }

  merge(other: LatencyHistogram): void {
    for (let i = 0; i < bucketCount; i += 1) this.counts[i] = (this.counts[i] ?? 0) + (other.counts[i] ?? 0);
    this.total += other.total;
  }

  /**
   * The latency in milliseconds below which `p` (0–1) of the calls fall. Returns the geometric
   * middle of the bucket that holds that call, or NaN when nothing was recorded.
   */
  percentileMs(p: number): number {
    if (this.total === 0) return Number.NaN;
    const rank = Math.max(1, Math.ceil(p * this.total));
    let seen = 0;
    for (let i = 0; i < bucketCount; i += 1) {
      seen += this.counts[i] ?? 0;
      if (seen >= rank) return i === 0 ? 0.001 : Math.pow(growth, i - 0.5) / 1000;
    }
    return Math.pow(growth, bucketCount) / 1000;
  }

  /** A plain array for the IPC channel, which serialises typed arrays poorly. */
  toJSON(): number[] {
    return Array.from(this.counts);
  }
}
