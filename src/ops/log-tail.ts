/** The last lines of the log, kept in memory for the dashboard, with a feed of new ones. */
import type { LogSink } from "../log.js";

export class LogTail {
  private readonly kept: string[] = [];
  private readonly listeners = new Set<(line: string) => void>();

  constructor(readonly capacity = 200) {}

  /** Give this to the logger (through `teeSink`). */
  readonly sink: LogSink = (line) => {
    this.kept.push(line);
    if (this.kept.length > this.capacity) this.kept.splice(0, this.kept.length - this.capacity);
    for (const listener of this.listeners) listener(line);
  };

  lines(n = this.capacity): string[] {
    return this.kept.slice(-n);
  }

  /** Calls `listener` with each new line; returns the unsubscribe function. */
  subscribe(listener: (line: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
