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

/** The postmaster's messages that tie a worker's name or type to its pid (src/postmaster/machine.ts, runner.ts). */
const NAME_AND_PID = /^started background worker "(.*)" \(PID (\d+)\)$/;
const TYPE_AND_PID = /^(?:restarting )?background worker "(.*)" \(PID (\d+)\) /;
/** Said by the worker itself (its pid speaks) about its type. */
const OWN_TYPE = /^terminating background worker "(.*)" due to administrator command$/;
const PID_MENTION = /\(PID (\d+)\)/g;

/**
 * What the log says about workers, learned line by line: each worker pid's type, and each worker name's type
 * (the DEBUG register/start lines name a worker by its name, other lines by its type). A JSON line names its
 * worker outright; a text line only through these messages, its worker-output prefix, and its speaker's pid.
 */
export class WorkerIndex {
  readonly typeOfPid = new Map<number, string>();
  readonly typeOfName = new Map<string, string>();
  readonly #nameOfPid = new Map<number, string>();

  learn(line: string, record: LogRecord | undefined = parseLogLine(line)): void {
    if (record === undefined) return;
    const worker = record.worker;
    if (worker !== undefined && line.startsWith("{")) {
      this.typeOfName.set(worker.name, worker.type);
      if (worker.pid !== undefined) this.#pid(worker.pid, worker.type);
      return;
    }
    if (worker !== undefined) {
      // A worker's output: `[PID] TYPE: line`.
      this.#pid(record.pid, worker.type);
      return;
    }
    const started = NAME_AND_PID.exec(record.message);
    if (started !== null) {
      const pid = Number(started[2]);
      this.#nameOfPid.set(pid, started[1]!);
      // A new process: whatever an older process with this pid was is forgotten, unless its name says.
      const type = this.typeOfName.get(started[1]!);
      if (type === undefined) this.typeOfPid.delete(pid);
      else this.typeOfPid.set(pid, type);
      return;
    }
    const typed = TYPE_AND_PID.exec(record.message);
    if (typed !== null) {
      this.#pid(Number(typed[2]), typed[1]!);
      return;
    }
    const own = OWN_TYPE.exec(record.message);
    if (own !== null) this.#pid(record.pid, own[1]!);
  }

  /** Adds what `older` (learned from older lines) knows and this does not: the newer knowledge wins. */
  absorb(older: WorkerIndex): void {
    for (const [pid, type] of older.typeOfPid) if (!this.typeOfPid.has(pid)) this.typeOfPid.set(pid, type);
    for (const [name, type] of older.typeOfName) if (!this.typeOfName.has(name)) this.typeOfName.set(name, type);
    for (const [pid, name] of older.#nameOfPid) if (!this.#nameOfPid.has(pid)) this.#nameOfPid.set(pid, name);
  }

  #pid(pid: number, type: string): void {
    this.typeOfPid.set(pid, type);
    const name = this.#nameOfPid.get(pid);
    if (name !== undefined) this.typeOfName.set(name, type);
  }
}

/**
 * Whether the line is about that worker, on its own: its pid speaks or is named (`(PID N)`); or, for a type,
 * the line names its worker with that type, its speaker or a pid it names is a worker of that type, or it
 * names `"TYPE"` or the name of a worker of that type. A line continuing the one before (see `continues`)
 * is not judged on its own: `WorkerLineFilter` gives it the verdict of that line.
 */
export function matchesWorker(line: string, record: LogRecord | undefined, filter: WorkerFilter, index: WorkerIndex = new WorkerIndex()): boolean {
  const message = record?.message ?? line;
  if ("pid" in filter) {
    if (record?.pid === filter.pid || record?.worker?.pid === filter.pid) return true;
    return message.includes(`(PID ${filter.pid})`);
  }
  // A JSON line, or a worker's output, names its worker: that settles it.
  if (record?.worker !== undefined) return record.worker.type === filter.type;
  if (record !== undefined && index.typeOfPid.get(record.pid) === filter.type) return true;
  for (const mention of message.matchAll(PID_MENTION)) if (index.typeOfPid.get(Number(mention[1])) === filter.type) return true;
  if (message.includes(`"${filter.type}"`)) return true;
  for (const [name, type] of index.typeOfName) if (type === filter.type && message.includes(`"${name}"`)) return true;
  return false;
}

/**
 * Whether a text line continues the line before rather than being a line of its own: a `DETAIL:` line of the
 * same pid, or a line without the prefix (the rest of a multi-line detail, such as a stack trace).
 */
export function continues(line: string, record: LogRecord | undefined, previousPid: number | undefined): boolean {
  if (line.startsWith("{")) return false;
  if (record === undefined) return previousPid !== undefined;
  return record.pid === previousPid && record.message.startsWith("DETAIL:  ");
}

/**
 * Selects the lines about one worker, fed in file order: learns from each line (`WorkerIndex`) and gives a
 * continuation line the verdict of the line it continues.
 */
export class WorkerLineFilter {
  #previousPid: number | undefined;
  #previous = false;

  constructor(
    readonly filter: WorkerFilter,
    readonly index: WorkerIndex = new WorkerIndex(),
  ) {}

  /** Whether to show the line; `learn: false` when the index has learned from it already. */
  select(line: string, record: LogRecord | undefined = parseLogLine(line), learn = true): boolean {
    if (continues(line, record, this.#previousPid)) return this.#previous;
    if (learn) this.index.learn(line, record);
    this.#previousPid = record?.pid;
    this.#previous = matchesWorker(line, record, this.filter, this.index);
    return this.#previous;
  }
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

/** The line as it should be shown (text as written, a JSON record rendered, or a JSON record), filter aside. */
function shown(line: string, record: LogRecord | undefined, json: boolean): string {
  if (json) return record === undefined ? JSON.stringify({ message: line }) : JSON.stringify(record);
  return line.startsWith("{") && record !== undefined ? formatText(record) : line;
}

/** Renders lines fed in file order: undefined for a line the view's filter leaves out. */
export class LogRenderer {
  readonly #filter: WorkerLineFilter | undefined;

  constructor(
    readonly view: LogView,
    index?: WorkerIndex,
  ) {
    this.#filter = view.filter === undefined ? undefined : new WorkerLineFilter(view.filter, index);
  }

  get index(): WorkerIndex | undefined {
    return this.#filter?.index;
  }

  render(line: string, learned = false): string | undefined {
    const record = parseLogLine(line);
    if (this.#filter !== undefined && !this.#filter.select(line, record, !learned)) return undefined;
    return shown(line, record, this.view.json);
  }
}

/** One line as it should be shown, judged on its own (no lines before it to learn from). */
export function render(line: string, view: LogView): string | undefined {
  return new LogRenderer(view).render(line);
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

/**
 * The last `n` shown lines, from the current file back through the rotated ones as needed, and the renderer
 * to go on with (`follow`): it knows what the current file says about workers and how its last line ended.
 * With a filter, each file is learned from before its lines are selected, so that a line is shown even when
 * what ties it to the worker comes later (the exit line that names a pid's type).
 */
export function lastLines(
  file: string,
  n: number,
  view: LogView,
): { lines: string[]; position: ReadPosition | undefined; renderer: LogRenderer } {
  const shownLines: string[] = [];
  const current = readCurrent(file);
  let renderer: LogRenderer | undefined;
  // What the files read so far taught, newest first.
  const learned = new WorkerIndex();
  for (let index = 0; index === 0 || shownLines.length < n; index += 1) {
    let text: string;
    try {
      if (index === 0 && current === undefined) break;
      text = index === 0 ? current!.text : fs.readFileSync(rotatedName(file, index), "utf8");
    } catch {
      break;
    }
    const lines = text.split("\n");
    if (lines.at(-1) === "") lines.pop();
    const fileIndex = new WorkerIndex();
    if (view.filter !== undefined) {
      // A file's lines are read in the light of that file first (a pid may have served another worker in
      // another file), then of the newer files.
      for (const line of lines) fileIndex.learn(line);
      fileIndex.absorb(learned);
      learned.absorb(fileIndex);
    }
    const fileRenderer = new LogRenderer(view, fileIndex);
    if (index === 0) renderer = fileRenderer;
    const batch: string[] = [];
    for (const line of lines) {
      const out = fileRenderer.render(line, true);
      if (out !== undefined) batch.push(out);
    }
    if (shownLines.length < n) shownLines.unshift(...batch.slice(Math.max(0, batch.length - (n - shownLines.length))));
  }
  renderer?.index?.absorb(learned);
  return { lines: shownLines, position: current?.position, renderer: renderer ?? new LogRenderer(view, learned) };
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
