/**
 * A latch, as PostgreSQL's: a flag plus a wake-up. Another process sets it with SIGURG (what PostgreSQL
 * itself uses for latches since 15); SIGURG's default action is to be ignored, so a stray one is harmless.
 */
import { makeError } from "../errors.js";

export type WakeReason = "latch" | "timeout" | "terminate" | "postmaster-death";

export class Latch {
  private isSet = false;
  private wake: ((reason: WakeReason) => void) | undefined;
  private stopped: WakeReason | undefined;

  set(): void {
    this.isSet = true;
    this.wake?.("latch");
  }

  /**
   * From now on every wait returns at once with `reason`: termination was requested, or the postmaster
   * is gone. It is never cleared, so a loop that waits again still sees it.
   */
  stop(reason: "terminate" | "postmaster-death"): void {
    if (this.stopped === "postmaster-death") return;
    this.stopped = reason;
    this.wake?.(reason);
  }

  get stopReason(): WakeReason | undefined {
    return this.stopped;
  }

  /** Waits for the latch, the timeout (null: none) or a stop; resets the latch before returning. */
  async wait(timeoutMs: number | null): Promise<WakeReason> {
    if (this.wake !== undefined) {
      throw makeError(Error, "ERR_BGWORKER_LATCH_BUSY", "waitLatch: another waitLatch() of this worker is already waiting; wait from one place at a time");
    }
    const reason = await new Promise<WakeReason>((resolve) => {
      if (this.stopped !== undefined) return resolve(this.stopped);
      if (this.isSet) return resolve("latch");
      const timer = timeoutMs === null ? undefined : setTimeout(() => resolve("timeout"), timeoutMs);
      this.wake = (why) => {
        if (timer !== undefined) clearTimeout(timer);
        resolve(why);
      };
    });
    this.wake = undefined;
    this.isSet = false;
    return this.stopped ?? reason;
  }
}
