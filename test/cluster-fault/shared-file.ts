/**
 * The file every node's singleton appends to (fixtures/worker.ts), read as it grows: the harness watches it
 * to see work flow (before a fault, and after it on the new holder) and, at the end, hands every line to the
 * overlap detector. Lines are parsed by overlap.ts.
 */
import { closeSync, openSync, readSync, writeFileSync } from "node:fs";
import { parseFileLines, type FileLine } from "./overlap.js";

export class SharedFile {
  readonly lines: FileLine[] = [];
  readonly bad: string[] = [];
  private offset = 0;
  private partial = "";

  constructor(readonly path: string) {
    writeFileSync(path, "", { mode: 0o666 });
  }

  /** Reads what was appended since the last call; returns the new lines. */
  poll(): FileLine[] {
    const fd = openSync(this.path, "r");
    const fresh: FileLine[] = [];
    try {
      const buffer = Buffer.alloc(1 << 16);
      for (;;) {
        const n = readSync(fd, buffer, 0, buffer.length, this.offset);
        if (n === 0) break;
        this.offset += n;
        const text = this.partial + buffer.toString("utf8", 0, n);
        const end = text.lastIndexOf("\n");
        this.partial = end < 0 ? text : text.slice(end + 1);
        if (end < 0) continue;
        const parsed = parseFileLines(text.slice(0, end + 1));
        fresh.push(...parsed.lines);
        this.bad.push(...parsed.bad);
      }
    } finally {
      closeSync(fd);
    }
    this.lines.push(...fresh);
    return fresh;
  }

  /** The lines from index `from` on (after a poll). */
  since(from: number): FileLine[] {
    return this.lines.slice(from);
  }
}
