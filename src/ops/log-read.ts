/**
 * Reading the postmaster's log files back (`bgworker logs`): the last lines across rotated files, and
 * following the current file as it grows and rotates. What each line says, and whether it is shown, is
 * log-lines.ts's.
 */
import fs from "node:fs";
import path from "node:path";
import { DEFAULT_LOG_FILE, rotatedName } from "./log-file.js";
import { LogRenderer, WorkerIndex, type LogView } from "./log-lines.js";

export type { LogView, WorkerFilter } from "./log-lines.js";

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
