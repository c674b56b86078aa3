/** What several fault cases share: the fault extension, a postmaster running it, reading exits from its log. */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { LogRecord } from "../../src/log.js";
import { startPostmaster, type RunningPostmaster } from "../helpers/postmaster.js";
import type { FaultWorker } from "./fixtures/extension.js";

export const FAULT_EXTENSION = fileURLToPath(new URL("./fixtures/extension.ts", import.meta.url));
export const FAULT_WORKERS = fileURLToPath(new URL("./fixtures/workers.ts", import.meta.url));

export async function startFaultPostmaster(workers: FaultWorker[], args: string[], env: NodeJS.ProcessEnv = {}): Promise<RunningPostmaster> {
  return startPostmaster({
    extensions: [FAULT_EXTENSION],
    args,
    env: { BGW_FAULT_WORKERS: JSON.stringify(workers), ...env },
  });
}

export interface ExitRecord {
  readonly name: string;
  readonly pid: number;
  /** Exit code, or null for a death by signal. */
  readonly code: number | null;
  readonly signal: number | null;
}

const EXIT = /^background worker "(.+)" \(PID (\d+)\) (?:exited with exit code (\d+)|was terminated by signal (\d+))/;

/** Every worker exit the postmaster logged, in order. */
export function exitsOf(pm: RunningPostmaster): ExitRecord[] {
  const out: ExitRecord[] = [];
  for (const record of pm.records as LogRecord[]) {
    if (record.stream !== undefined) continue;
    const match = EXIT.exec(record.message);
    if (match === null) continue;
    out.push({
      name: match[1]!,
      pid: Number(match[2]),
      code: match[3] === undefined ? null : Number(match[3]),
      signal: match[4] === undefined ? null : Number(match[4]),
    });
  }
  return out;
}

/** When each worker pid said "started" (its own clock), from the log. */
export function startTimes(pm: RunningPostmaster): Map<number, number> {
  const out = new Map<number, number>();
  for (const event of pm.events("started")) out.set(event.pid, Number(event.at));
  return out;
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!;
}

export { join };
