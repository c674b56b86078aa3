/**
 * How many warm spare runners to keep: at least the configured floor, more while launches outrun the pool.
 * Each launch that finds no warm spare (it waits for a booting one, or forks cold) raises the target by
 * one, up to the ceiling; each quiet period without such a miss lowers it by one, back to the floor. A spare
 * costs memory (an idle Node process with the runtime loaded) and nothing else, so the pool grows at once
 * and shrinks slowly. Pure: the caller supplies the time.
 */

/** How long without a miss before the target drops by one spare. */
export const SPARE_DECAY_MS = 30_000;
/** The default ceiling (`maxSpareRunners`): enough for a burst of launches to find warm spares. */
export const SPARE_CEILING = 8;
export class SparePolicy {
  private wanted: number;
  private readonly limit: number;
  private lastChange = 0;

  /**
   * `floor` is the `spareRunners` option, `ceiling` the `maxSpareRunners` one (at least the floor). A floor of
   * 0 means no spares at all: the pool never grows.
   */
  constructor(
    readonly floor: number,
    readonly ceiling: number,
    private readonly decayMs: number = SPARE_DECAY_MS,
  ) {
    this.wanted = floor;
    this.limit = floor === 0 ? 0 : Math.max(floor, ceiling);
  }

  /** How many spares to keep now. */
  get target(): number {
    return this.wanted;
  }

  /** A launch found no warm spare. */
  missed(now: number): void {
    if (this.wanted < this.limit) this.wanted += 1;
    this.lastChange = now;
  }

  /** Time passes: after a quiet period, one spare fewer. True when the target dropped. */
  tick(now: number): boolean {
    if (this.wanted <= this.floor || now - this.lastChange < this.decayMs) return false;
    this.wanted -= 1;
    this.lastChange = now;
    return true;
  }
}
