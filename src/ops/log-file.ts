/**
 * The postmaster's log file: appended to synchronously (a line is on disk before the next event, and a
 * postmaster that dies still leaves its last words), rotated by size like PostgreSQL's `log_rotation_size`,
 * keeping a bounded number of files: `bgworker.log`, `bgworker.log.1` (the newest rotated), ... `.N-1`.
 */
import fs from "node:fs";
import path from "node:path";

/** PostgreSQL's default `log_rotation_size` is 10 MB. */
export const DEFAULT_LOG_ROTATION_SIZE = 10 * 1024 * 1024;
/** The current file plus four rotated ones. */
export const DEFAULT_LOG_FILES = 5;
/** Where a project's log file lives, relative to the postmaster's working directory. */
export const DEFAULT_LOG_FILE = path.join(".bgworker", "log", "bgworker.log");

export interface LogFileOptions {
  /** Rotate once the file would grow past this many bytes; 0 never rotates. */
  readonly rotationSize?: number;
  /** How many files to keep, the current one included (at least 1). */
  readonly files?: number;
}

/** The name of the `n`th file: the current one for 0, then `.1` (the newest rotated) and so on. */
export function rotatedName(file: string, n: number): string {
  return n === 0 ? file : `${file}.${n}`;
}

export class RotatingLogFile {
  readonly path: string;
  readonly rotationSize: number;
  readonly files: number;
  private fd: number | undefined;
  private size = 0;
  private failed = false;

  constructor(file: string, options: LogFileOptions = {}) {
    this.path = path.resolve(file);
    this.rotationSize = options.rotationSize ?? DEFAULT_LOG_ROTATION_SIZE;
    this.files = Math.max(1, options.files ?? DEFAULT_LOG_FILES);
    // Opened at the first line, not here: a start that fails its checks before logging anything (a missing
    // extension, another postmaster on the socket) leaves no directory or file behind.
  }

  /**
   * Appends one line (a newline is added). Never throws: a log that cannot be written must not stop the
   * postmaster; the first failure is reported through `onError`, later ones are dropped silently.
   */
  write(line: string, onError?: (error: Error) => void): void {
    const data = Buffer.from(line + "\n");
    try {
      if (this.fd === undefined) this.open();
      if (this.rotationSize > 0 && this.size > 0 && this.size + data.length > this.rotationSize) this.rotate();
      fs.writeSync(this.fd!, data);
      this.size += data.length;
      this.failed = false;
    } catch (error) {
      if (!this.failed) onError?.(error instanceof Error ? error : new Error(String(error)));
      this.failed = true;
    }
  }

  close(): void {
    if (this.fd === undefined) return;
    try {
      fs.closeSync(this.fd);
    } catch {
      // Closing is best effort.
    }
    this.fd = undefined;
  }

  private open(): void {
    // Log lines may carry what workers print: the directory is the owner's only, as .bgworker/ is.
    fs.mkdirSync(path.dirname(this.path), { recursive: true, mode: 0o700 });
    this.fd = fs.openSync(this.path, "a", 0o600);
    this.size = fs.fstatSync(this.fd).size;
  }

  /** bgworker.log.(N-2) -> .(N-1), ..., bgworker.log -> .1; the oldest is overwritten (with one file, truncated). */
  private rotate(): void {
    this.close();
    if (this.files === 1) {
      fs.truncateSync(this.path, 0);
    } else {
      for (let n = this.files - 2; n >= 0; n -= 1) {
        try {
          fs.renameSync(rotatedName(this.path, n), rotatedName(this.path, n + 1));
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
        }
      }
    }
    this.open();
  }
}

/** `10MB`, `512kB`, `1GB` or a number of bytes, PostgreSQL's memory units (1024-based). */
export function parseSize(text: string): number | undefined {
  const match = /^([0-9]+)\s*(B|kB|MB|GB)?$/.exec(text);
  if (match === null) return undefined;
  const units: Record<string, number> = { B: 1, kB: 1024, MB: 1024 ** 2, GB: 1024 ** 3 };
  const value = Number(match[1]) * (units[match[2] ?? "B"] ?? 1);
  return Number.isSafeInteger(value) ? value : undefined;
}
