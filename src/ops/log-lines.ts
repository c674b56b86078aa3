/**
 * What one line of the postmaster's log says (`bgworker logs`): a line parsed back into a record, the
 * workers the lines name, whether a line is about a given worker, and how it is shown. Reading the files
 * (the last lines across rotations, following them) is log-read.ts's.
 *
 * A JSON line says it all: its record names its worker, and the postmaster's own events carry their kind and
 * fields. A text line is read back through the same event table that rendered it (log-events.ts), for the
 * kinds that tie a worker's name or type to a pid.
 */
import { isLogEventKind, readEvent, type LogEvent } from "../log-events.js";
import { formatText, type LogLevel, type LogRecord } from "../log.js";

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

/**
 * The postmaster's event a record is: a JSON line's kind and fields, or the event a text line's message
 * renders (only the kinds log-events.ts reads back); undefined for anything else.
 */
export function eventOf(record: LogRecord): LogEvent | undefined {
  if (record.event !== undefined) {
    return isLogEventKind(record.event) ? ({ ...record.fields, event: record.event } as LogEvent) : undefined;
  }
  return readEvent(record.message);
}

const PID_MENTION = /\(PID (\d+)\)/g;

/**
 * What the log says about workers, learned line by line: each worker pid's type, and each worker name's type.
 * A JSON line names its worker outright. A text line names it through its worker-output prefix (`TYPE:`),
 * or through the postmaster's events that tie a type to a pid (an exit, a restart, a worker's own FATAL on
 * SIGTERM). Only the DEBUG `worker-started` line ties a name to a pid: it is in a text log written with
 * BGWORKER_DEBUG=1; without it, lines that name a worker by its name (unregistering, a failed fork) are
 * tied to its type only when the name is the type, or in a JSON log.
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
    const event = eventOf(record);
    switch (event?.event) {
      case "worker-started": {
        this.#nameOfPid.set(event.pid, event.name);
        // A new process: whatever an older process with this pid was is forgotten, unless its name says.
        const type = this.typeOfName.get(event.name);
        if (type === undefined) this.typeOfPid.delete(event.pid);
        else this.typeOfPid.set(event.pid, type);
        return;
      }
      case "worker-exited":
        this.#pid(event.pid, event.type);
        return;
      case "worker-restart-requested":
        if (event.pid !== null) this.#pid(event.pid, event.type);
        return;
      case "worker-terminating":
        // Said by the worker itself: its pid speaks.
        this.#pid(record.pid, event.type);
        return;
    }
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

