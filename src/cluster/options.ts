/**
 * The `cluster` option of `new Postmaster({...})` (SPEC §10: `{ name, nodeId?, leaseMs?: 5000, renewMs?: 1000 }`),
 * and `--cluster NAME [--node-id ID]`: checked before anything starts, as every Postmaster option, with
 * ERR_BGWORKER_INVALID_OPTION. Pure: the host name and pid for the default node id are passed in.
 */
import type { DatabaseOption } from "../database/types.js";
import { makeError, show } from "../errors.js";
import { invalidOption } from "../option-check.js";
import { leaseTimings, type LeaseTimings } from "./timings.js";

export interface ClusterOption {
  /** Postmasters serving the same database under the same name form one cluster. */
  readonly name: string;
  /** This node's id; default `HOSTNAME-PID`. Two live nodes with the same id is an error. */
  readonly nodeId?: string;
  /** The lease's time to live, by the server's clock. Default 5000. */
  readonly leaseMs?: number;
  /** The renewal period. Default 1000. */
  readonly renewMs?: number;
}

export interface ClusterConfig {
  readonly name: string;
  readonly nodeId: string;
  readonly timings: LeaseTimings;
}

/**
 * Names and ids are stored as text but also shown in `application_name` and `pg_stat_activity`, whose
 * values PostgreSQL cuts at 63 bytes (NAMEDATALEN - 1): the same bound here, so nothing is cut silently.
 */
export const MAX_CLUSTER_NAME_BYTES = 63;

function label(field: string, value: unknown): string {
  // Printable only: these appear in log lines, status tables and NOTIFY payloads.
  if (typeof value !== "string" || value.length === 0 || Buffer.byteLength(value) > MAX_CLUSTER_NAME_BYTES || /[\u0000-\u001f\u007f]/.test(value)) {
    throw invalidOption(`${field} ${show(value)} must be a non-empty string of at most ${MAX_CLUSTER_NAME_BYTES} bytes without control characters`);
  }
  return value;
}

/** The default node id: PostgreSQL people read `pg_stat_activity` by host and pid, so the id says both. */
export function defaultNodeId(hostname: string, pid: number): string {
  const suffix = `-${pid}`;
  let host = hostname.length > 0 ? hostname : "localhost";
  while (Buffer.byteLength(host + suffix) > MAX_CLUSTER_NAME_BYTES) host = host.slice(0, -1);
  return host + suffix;
}

/**
 * The cluster configuration, or null without the option. Cluster mode needs a database that every node
 * reaches (`database: { url }`): an embedded or `pgdata` server is this host's own, so it is refused rather
 * than silently forming a cluster of one.
 */
export function resolveClusterOption(
  value: unknown,
  context: { readonly database: DatabaseOption | false; readonly shutdownTimeoutMs: number; readonly hostname: string; readonly pid: number },
): ClusterConfig | null {
  if (value === undefined) return null;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw invalidOption(`cluster ${show(value)} must be an object { name, nodeId?, leaseMs?, renewMs? }`);
  }
  const record = value as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    if (!["name", "nodeId", "leaseMs", "renewMs"].includes(key)) throw invalidOption(`cluster.${key} is not an option (name, nodeId, leaseMs, renewMs)`);
  }
  const name = label("cluster.name", record.name);
  const nodeId = record.nodeId === undefined ? defaultNodeId(context.hostname, context.pid) : label("cluster.nodeId", record.nodeId);
  const database = context.database;
  if (typeof database !== "object" || !("url" in database)) {
    throw invalidOption(`cluster mode needs a database that every node reaches: give database { url } (--database URL); this postmaster would serve ${database === false ? "no database" : typeof database === "object" ? "its own pgdata directory" : "its own embedded database"}`);
  }
  const timings = leaseTimings({ leaseMs: record.leaseMs, renewMs: record.renewMs, shutdownTimeoutMs: context.shutdownTimeoutMs });
  return { name, nodeId, timings };
}

/** `registerNode` found a live node with this id (SPEC §10: two live nodes with the same id is an error). */
export function nodeIdInUse(cluster: string, nodeId: string): Error {
  return makeError(
    Error,
    "ERR_BGWORKER_CLUSTER_NODE_ID_IN_USE",
    `cluster "${cluster}": node id ${show(nodeId)} is in use by a live postmaster; give each node its own --node-id (default HOSTNAME-PID)`,
  );
}
