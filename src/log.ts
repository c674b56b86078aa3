/**
 * The postmaster's log: one line per event, in the shape of PostgreSQL's server log
 * (`log_line_prefix = '%m [%p] '`), or one JSON object per line. The postmaster's own events are data
 * (log-events.ts): the text is their rendering, and a JSON line carries their kind and fields as well.
 */
import { levelOf, renderEvent, type LogEvent } from "./log-events.js";

/** PostgreSQL's message severities, as they appear in the log. */
export type LogLevel = "DEBUG" | "LOG" | "INFO" | "NOTICE" | "WARNING" | "ERROR" | "FATAL" | "PANIC";

/** `text` mirrors PostgreSQL's server log; `json` writes one object per line. */
export type LogFormat = "text" | "json";

export const LOG_FORMATS: readonly LogFormat[] = ["text", "json"];

/** Who a log line is about, when it is about a worker. */
export interface WorkerRef {
  readonly type: string;
  readonly name: string;
  readonly pid?: number | undefined;
}

export interface LogRecord {
  readonly time: string;
  /** The process that speaks: the postmaster for its own events, the worker for what it reports or prints. */
  readonly pid: number;
  readonly level: LogLevel;
  readonly message: string;
  readonly worker?: WorkerRef;
  /** Set for lines a worker wrote to its own stdout or stderr. */
  readonly stream?: "stdout" | "stderr";
  readonly detail?: string;
  /** For the postmaster's own events: the kind (log-events.ts), in JSON lines only. */
  readonly event?: LogEvent["event"];
  /** The event's fields beside its kind, in JSON lines only. */
  readonly fields?: Readonly<Record<string, unknown>>;
}

export type LogSink = (line: string) => void;

const brokenStreams = new WeakSet<NodeJS.WriteStream>();
const guardedStreams = new WeakSet<NodeJS.WriteStream>();

/**
 * Makes `stream` (the process's stdout or stderr) safe to write to when its reader has gone away
 * (`bgworker start | head -1`, a closed terminal): the EPIPE that Node reports as an `error` event would
 * otherwise end the process. From then on writes to it are dropped. Idempotent.
 */
export function guardTerminalStream(stream: NodeJS.WriteStream): void {
  if (guardedStreams.has(stream)) return;
  guardedStreams.add(stream);
  stream.on("error", () => {
    // EPIPE, EIO (terminal gone) or a write after destroy: whatever it is, the terminal is no use any more.
    brokenStreams.add(stream);
  });
}

/** Writes a line to `stream` unless its reader is gone; never throws, never emits an unhandled error. */
export function writeToTerminal(stream: NodeJS.WriteStream, text: string): void {
  guardTerminalStream(stream);
  if (brokenStreams.has(stream) || stream.destroyed || stream.writableEnded) return;
  try {
    stream.write(text);
  } catch {
    brokenStreams.add(stream);
  }
}

/** A sink to a terminal stream (default stderr) that survives the stream breaking. */
export function terminalSink(stream: NodeJS.WriteStream = process.stderr): LogSink {
  guardTerminalStream(stream);
  return (line) => writeToTerminal(stream, line + "\n");
}

/** Every line to each sink; one sink failing does not keep the line from the others. */
export function teeSink(...sinks: LogSink[]): LogSink {
  return (line) => {
    for (const sink of sinks) {
      try {
        sink(line);
      } catch {
        // A sink must not throw; if one does, the others still get the line.
      }
    }
  };
}

/** An event's kind and fields as a JSON line carries them. */
function structured(event: LogEvent): { event: LogEvent["event"]; fields: Record<string, unknown> } {
  const { event: kind, ...fields } = event;
  return { event: kind, fields };
}

const defaultSink: LogSink = (line) => writeToTerminal(process.stderr, line + "\n");

/** `2026-11-24 13:10:00.123 UTC`, PostgreSQL's `%m`. */
export function pgTimestamp(date: Date): string {
  const iso = date.toISOString(); // 2026-11-24T13:10:00.123Z
  return `${iso.slice(0, 10)} ${iso.slice(11, 23)} UTC`;
}

export function formatText(record: LogRecord): string {
  const prefix = `${pgTimestamp(new Date(record.time))} [${record.pid}]`;
  if (record.stream !== undefined && record.worker !== undefined) {
    return `${prefix} ${record.worker.type}: ${record.message}`;
  }
  const detail = record.detail === undefined ? "" : `\n${prefix} DETAIL:  ${record.detail}`;
  return `${prefix} ${record.level}:  ${record.message}${detail}`;
}

export class Logger {
  readonly format: LogFormat;
  private readonly sink: LogSink;
  private readonly pid: number;

  private readonly debug: boolean;

  constructor(options: { format?: LogFormat; sink?: LogSink; pid?: number; debug?: boolean } = {}) {
    this.format = options.format ?? "text";
    this.sink = options.sink ?? defaultSink;
    this.pid = options.pid ?? process.pid;
    // DEBUG lines are for diagnosing the postmaster itself, as PostgreSQL's log_min_messages = debug1.
    this.debug = options.debug ?? process.env.BGWORKER_DEBUG !== undefined;
  }

  /** A line of prose, optionally about one worker (the postmaster's own events go through `event`). */
  log(level: LogLevel, message: string, extra: { worker?: WorkerRef; detail?: string } = {}): void {
    this.record(this.pid, level, message, extra);
  }

  /** One of the postmaster's events, optionally about one worker: its level and text come from its kind. */
  event(event: LogEvent, extra: { worker?: WorkerRef } = {}): void {
    this.record(this.pid, levelOf(event), renderEvent(event), { ...extra, event });
  }

  /** A message a worker's runtime reported about itself (e.g. its FATAL on SIGTERM): the worker's pid. */
  fromWorker(worker: WorkerRef & { pid: number }, level: LogLevel, message: string, detail?: string): void {
    this.record(worker.pid, level, message, detail === undefined ? { worker } : { worker, detail });
  }

  private record(pid: number, level: LogLevel, message: string, extra: { worker?: WorkerRef; detail?: string; event?: LogEvent }): void {
    if (level === "DEBUG" && !this.debug) return;
    this.emit({
      time: new Date().toISOString(),
      pid,
      level,
      message,
      ...(extra.worker === undefined ? {} : { worker: extra.worker }),
      ...(extra.detail === undefined ? {} : { detail: extra.detail }),
      ...(extra.event === undefined || this.format !== "json" ? {} : structured(extra.event)),
    });
  }

  /** One line a worker wrote to its stdout or stderr, prefixed with its type and pid. */
  output(worker: WorkerRef & { pid: number }, stream: "stdout" | "stderr", line: string): void {
    this.emit({
      time: new Date().toISOString(),
      pid: worker.pid,
      level: "LOG",
      message: line,
      worker,
      stream,
    });
  }

  private emit(record: LogRecord): void {
    this.sink(this.format === "json" ? JSON.stringify(record) : formatText(record));
  }
}
