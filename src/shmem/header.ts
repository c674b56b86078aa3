/**
 * The first 64 bytes of a segment: what lets a worker check that it mapped the segment it was told about,
 * and lets a later postmaster tell whether a leftover segment's creator is still alive.
 *
 *   0 u32 magic "BGWS"   4 u32 format   8 u32 generation   12 u32 creator pid
 *  16 u64 creator start time (clock ticks after boot, /proc/PID/stat field 22; 0 if unknown)
 *  24 u64 segment size    32..63 reserved
 */
import { readFileSync } from "node:fs";

export const HEADER_SIZE = 64;
const MAGIC = 0x53574742; // "BGWS" in little-endian bytes
const FORMAT = 1;

export interface SegmentHeader {
  readonly generation: number;
  readonly pid: number;
  readonly startTime: bigint;
  readonly size: number;
}

export function writeHeader(buffer: SharedArrayBuffer, header: SegmentHeader): void {
  const u32 = new Uint32Array(buffer, 0, 8);
  const u64 = new BigUint64Array(buffer, 0, 4);
  u32[1] = FORMAT;
  u32[2] = header.generation;
  u32[3] = header.pid;
  u64[2] = header.startTime;
  u64[3] = BigInt(header.size);
  // The magic goes last: a segment with the magic is complete.
  Atomics.store(u32, 0, MAGIC);
}

/** The header, or undefined if the buffer is not a segment of this format. */
export function readHeader(buffer: SharedArrayBuffer): SegmentHeader | undefined {
  if (buffer.byteLength < HEADER_SIZE) return undefined;
  const u32 = new Uint32Array(buffer, 0, 8);
  const u64 = new BigUint64Array(buffer, 0, 4);
  if (Atomics.load(u32, 0) !== MAGIC || u32[1] !== FORMAT) return undefined;
  return { generation: u32[2]!, pid: u32[3]!, startTime: u64[2]!, size: Number(u64[3]!) };
}

/**
 * When process `pid` started, in clock ticks after boot, or undefined if it does not exist (or this is
 * not Linux). With the pid it identifies a process even after the pid is reused.
 */
export function processStartTime(pid: number): bigint | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces and parentheses: count fields after its last ")".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const start = fields[19]; // field 22 overall; fields[0] is field 3
  return start !== undefined && /^\d+$/.test(start) ? BigInt(start) : undefined;
}
