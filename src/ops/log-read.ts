/**
 * Reading the postmaster's log file back (`bgworker logs`): the last lines across rotated files, filtering
 * by worker, and following the file as it grows and rotates.
 */
import fs from "node:fs";
import path from "node:path";
import { formatText, type LogLevel, type LogRecord } from "../log.js";
import { DEFAULT_LOG_FILE, rotatedName } from "./log-file.js";

/** A worker given as `--worker`: its type, or its pid. */
export type WorkerFilter = { readonly pid: number } | { readonly type: string };

const TEXT_LINE = /^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) UTC \[(\d+)\] (.*)$/;
const LEVELED = /^(DEBUG|LOG|INFO|NOTICE|WARNING|ERROR|FATAL|PANIC|DETAIL):  (.*)$/;

/** One line of the file as a record: a JSON line as written, a text line parsed back (best effort). */
export function parseLogLine(line: string): LogRecord | undefined {
  if (line.startsWith("{")) {
    try {
      const record = JSON.parse(line) as LogRecord;
      if (typeof record.time === "string" && typeof record.pid === "number") return record;
    } catch {
      return undefined;
    }
    return undefined;
  }
  const match = TEXT_LINE.exec(line);
  if (match === null) return undefined;
  const time = `${match[1]!.replace(" ", "T")}Z`;
  const pid = Number(match[2]);
  const rest = match[3]!;
  const leveled = LEVELED.exec(rest);
  if (leveled !== null) {
    const level = (leveled[1] === "DETAIL" ? "LOG" : leveled[1]) as LogLevel;
    return { time, pid, level, message: leveled[1] === "DETAIL" ? `DETAIL:  ${leveled[2]}` : leveled[2]! };
  }
  // `TYPE: line`: what a worker printed.
  const colon = rest.indexOf(": ");
  if (colon <= 0) return { time, pid, level: "LOG", message: rest };
  const type = rest.slice(0, colon);
  return { time, pid, level: "LOG", message: rest.slice(colon + 2), worker: { type, name: type, pid }, stream: "stdout" };
}

/** Whether the line is about that worker: its pid speaks or is named, or its type is named. */
export function matchesWorker(line: string, record: LogRecord | undefined, filter: WorkerFilter): boolean {
  if ("pid" in filter) {
    if (record?.pid === filter.pid || record?.worker?.pid === filter.pid) return true;
    return line.includes(`(PID ${filter.pid})`);
  }
  if (record?.worker?.type === filter.type) return true;
  const message = record?.message ?? line;
  return message.includes(`"${filter.type}"`);
}

/** The nearest `.bgworker/log/bgworker.log` walking up from `cwd`, as client commands find the socket. */
export function findLogFile(cwd: string = process.cwd()): string | undefined {
  let dir = path.resolve(cwd);
  for (;;) {
    const candidate = path.join(dir, DEFAULT_LOG_FILE);
    if (fs.existsSync(candidate)) return candidate;
    const parent = path.dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

export interface LogView {
  readonly filter?: WorkerFilter | undefined;
  /** Print JSON records instead of text lines. */
  readonly json: boolean;
}

/** The line as it should be shown: text as written (or a JSON record rendered), or a JSON record. */
export function render(line: string, view: LogView): string | undefined {
  const record = parseLogLine(line);
  if (view.filter !== undefined && !matchesWorker(line, record, view.filter)) return undefined;
  if (view.json) return record === undefined ? JSON.stringify({ message: line }) : JSON.stringify(record);
  return line.startsWith("{") && record !== undefined ? formatText(record) : line;
}

/** Where a read of the current file stopped: `follow` goes on from there, so no line falls in between. */
export interface ReadPosition {
  readonly ino: number;
  readonly offset: number;
}

/** The current file's text, read through one descriptor so that its inode and length match the text. */
function readCurrent(file: string): { text: string; position: ReadPosition } | undefined {
  let fd: number;
  try {
    fd = fs.openSync(file, "r");
  } catch {
    return undefined;
  }
  try {
    const { ino, size } = fs.fstatSync(fd);
    const buffer = Buffer.alloc(size);
    let offset = 0;
    while (offset < size) {
      const read = fs.readSync(fd, buffer, offset, size - offset, offset);
      if (read === 0) break;
      offset += read;
    }
    // A line still being written is left for `follow`.
    const complete = buffer.lastIndexOf(10, offset - 1) + 1;
    return { text: buffer.subarray(0, complete).toString("utf8"), position: { ino, offset: complete } };
  } finally {
    fs.closeSync(fd);
  }
}

/** The last `n` shown lines, from the current file back through the rotated ones as needed. */
export function lastLines(file: string, n: number, view: LogView): { lines: string[]; position: ReadPosition | undefined } {
  const shown: string[] = [];
  const current = readCurrent(file);
  for (let index = 0; shown.length < n; index += 1) {
    let text: string;
    try {
      if (index === 0 && current === undefined) break;
      text = index === 0 ? current!.text : fs.readFileSync(rotatedName(file, index), "utf8");
    } catch {
      break;
    }
    const lines = text.split("\n");
    if (lines.at(-1) === "") lines.pop();
    const batch: string[] = [];
    for (const line of lines) {
      const out = render(line, view);
      if (out !== undefined) batch.push(out);
    }
    shown.unshift(...batch.slice(Math.max(0, batch.length - (n - shown.length))));
  }
  return { lines: shown, position: current?.position };
}

/**
 * Follows `file` from `from` (where `lastLines` stopped), else from its current end: new complete lines go
 * to `emit`. Survives rotation (the rest of the old file is read before switching to the new one) and
 * truncation. Returns the function that stops it.
 */
export function follow(file: string, emit: (line: string) => void, from?: ReadPosition, intervalMs = 200): () => void {
  let fd: number | undefined;
  let offset = 0;
  let ino = -1;
  let pending = "";
  const open = (fromEnd: boolean): void => {
    try {
      fd = fs.openSync(file, "r");
      const stat = fs.fstatSync(fd);
      ino = stat.ino;
      offset = fromEnd ? stat.size : 0;
    } catch {
      fd = undefined; // not there (yet): try again on the next tick
    }
  };
  const drain = (): void => {
    if (fd === undefined) return;
    const buffer = Buffer.alloc(64 * 1024);
    for (;;) {
      const read = fs.readSync(fd, buffer, 0, buffer.length, offset);
      if (read === 0) break;
      offset += read;
      pending += buffer.subarray(0, read).toString("utf8");
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) emit(line);
    }
  };
  const tick = (): void => {
    try {
      if (fd === undefined) {
        open(false);
        drain();
        return;
      }
      drain();
      let current: fs.Stats | undefined;
      try {
        current = fs.statSync(file);
      } catch {
        current = undefined;
      }
      if (current === undefined || current.ino !== ino) {
        // Rotated: read what reached the old file before the rename, then any file rotated after it (when
        // several rotations happened between two looks), then start on the new one.
        drain();
        fs.closeSync(fd);
        fd = undefined;
        pending = "";
        for (const between of rotatedSince(file, ino)) for (const line of readLines(between)) emit(line);
        if (current !== undefined) {
          open(false);
          drain();
        }
      } else if (current.size < offset) {
        offset = 0; // truncated
      }
    } catch {
      // A vanished file between two calls: the next tick looks again.
    }
  };
  const resume = (position: ReadPosition): void => {
    try {
      if (fs.statSync(file).ino === position.ino) {
        fd = fs.openSync(file, "r");
        ino = position.ino;
        offset = position.offset;
        return;
      }
    } catch {
      // Gone or rotated: below.
    }
    // Rotated since that read: the rest of that file, the files rotated after it, then the current one.
    const old = rotatedWithInode(file, position.ino);
    if (old !== undefined) {
      for (const line of readLines(old, position.offset)) emit(line);
      for (const between of rotatedSince(file, position.ino)) for (const line of readLines(between)) emit(line);
    }
    open(false);
  };
  if (from === undefined) open(true);
  else resume(from);
  const timer = setInterval(tick, intervalMs);
  return () => {
    clearInterval(timer);
    if (fd !== undefined) fs.closeSync(fd);
  };
}

/** The rotated files newer than the one with inode `ino`, oldest first (none when it is not found). */
function rotatedSince(file: string, ino: number): string[] {
  const newer: string[] = [];
  for (let n = 1; ; n += 1) {
    let stat: fs.Stats;
    try {
      stat = fs.statSync(rotatedName(file, n));
    } catch {
      return []; // ran out of files without finding ours: nothing known to be in between
    }
    if (stat.ino === ino) return newer.reverse();
    newer.push(rotatedName(file, n));
  }
}

/** The rotated file that has inode `ino`, if it is still kept. */
function rotatedWithInode(file: string, ino: number): string | undefined {
  for (let n = 1; ; n += 1) {
    try {
      if (fs.statSync(rotatedName(file, n)).ino === ino) return rotatedName(file, n);
    } catch {
      return undefined;
    }
  }
}

function readLines(file: string, from = 0): string[] {
  try {
    const lines = fs.readFileSync(file).subarray(from).toString("utf8").split("\n");
    if (lines.at(-1) === "") lines.pop();
    return lines;
  } catch {
    return [];
  }
}
