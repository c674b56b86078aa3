/**
 * The SPI session of an in-server worker: the part of node-postgres's `Client` that the SPI session
 * (runtime/spi.ts) uses, over the backend's own SPI. Values go as text, as node-postgres sends them (its own
 * `prepareValue`), typed by the server as the extended protocol types them; results come back as text plus
 * type OIDs and are parsed by the session's `pg-types` parsers, so a worker sees the same JavaScript values in
 * both modes. BEGIN, COMMIT and ROLLBACK are the backend's real transaction of its own process.
 */
import { EventEmitter } from "node:events";
import { createRequire } from "node:module";
import type { BackendTransport } from "./transport.js";
import { FrameWriter, type FrameReader } from "./wire.js";

const require = createRequire(import.meta.url);
const { prepareValue } = require("pg/lib/utils.js") as { prepareValue(value: unknown): unknown };

type Parser = (value: string) => unknown;
export interface TypeParsers {
  getTypeParser(oid: number, format?: "text" | "binary"): Parser;
}

export interface QueryConfigLike {
  readonly text: string;
  readonly values?: unknown[];
  readonly rowMode?: "array";
}

export interface QueryResultLike {
  readonly command: string;
  readonly rowCount: number | null;
  readonly rows: unknown[];
  readonly fields: { readonly name: string; readonly dataTypeID: number }[];
}

function asText(value: unknown): string | null {
  const prepared = prepareValue(value);
  if (prepared === null || prepared === undefined) return null;
  if (Buffer.isBuffer(prepared)) return `\\x${prepared.toString("hex")}`;
  return String(prepared);
}

const TRANSACTION_FRAMES: Readonly<Record<string, string>> = { BEGIN: "B", COMMIT: "M", ROLLBACK: "R" };

export class InServerClient extends EventEmitter {
  processID: number | undefined;
  readonly #transport: BackendTransport;
  readonly #database: string | null;
  readonly #user: string | null;
  readonly #types: TypeParsers;

  constructor(transport: BackendTransport, options: { database?: string | undefined; user?: string | undefined; types: TypeParsers }) {
    super();
    this.#transport = transport;
    this.#database = options.database === undefined || options.database === "" ? null : options.database;
    this.#user = options.user === undefined || options.user === "" ? null : options.user;
    this.#types = options.types;
  }

  /** BackgroundWorkerInitializeConnection in the backend; a database or role it cannot use is its FATAL. */
  async connect(): Promise<void> {
    // No role given: PostgreSQL's own default for a background worker, the bootstrap superuser
    // (BackgroundWorkerInitializeConnection with no user name). PGUSER is libpq's, and no connection is made here.
    const reply = await this.#transport.request(new FrameWriter("C").str(this.#database).str(this.#user));
    this.processID = reply.u32();
  }

  async query(config: string | QueryConfigLike, values?: unknown[]): Promise<QueryResultLike> {
    const text = typeof config === "string" ? config : config.text;
    const params = (typeof config === "string" ? values : config.values) ?? [];
    // Only a text of a few letters can be BEGIN, COMMIT or ROLLBACK: a statement is not upper-cased on its way.
    const trimmed = params.length === 0 ? text.trim() : "";
    const transaction = trimmed.length <= 8 ? TRANSACTION_FRAMES[trimmed.toUpperCase()] : undefined;
    if (transaction !== undefined) {
      await this.#transport.request(new FrameWriter(transaction, 16));
      return { command: trimmed.toUpperCase(), rowCount: null, rows: [], fields: [] };
    }
    const frame = new FrameWriter("Q", text.length <= 4096 ? 64 + text.length * 3 : undefined).str(text).u32(params.length);
    for (const value of params) frame.str(asText(value));
    return this.#result(await this.#transport.request(frame), typeof config !== "string" && config.rowMode === "array");
  }

  #result(reply: FrameReader, arrays: boolean): QueryResultLike {
    const command = reply.str() ?? "";
    const processed = Number(reply.u64());
    const columns = reply.u32();
    const fields: { name: string; dataTypeID: number }[] = [];
    const parsers: Parser[] = [];
    for (let c = 0; c < columns; c++) {
      const name = reply.str() ?? "";
      const dataTypeID = reply.u32();
      fields.push({ name, dataTypeID });
      parsers.push(this.#types.getTypeParser(dataTypeID, "text"));
    }
    const count = reply.u32();
    const rows: unknown[] = [];
    for (let r = 0; r < count; r++) {
      if (arrays) {
        const row: unknown[] = [];
        for (let c = 0; c < columns; c++) {
          const text = reply.str();
          row.push(text === null ? null : parsers[c]!(text));
        }
        rows.push(row);
      } else {
        const row: Record<string, unknown> = {};
        for (let c = 0; c < columns; c++) {
          const text = reply.str();
          row[fields[c]!.name] = text === null ? null : parsers[c]!(text);
        }
        rows.push(row);
      }
    }
    // node-postgres reports no row count for utility commands (CREATE, SET, ...).
    return { command: command === "UTILITY" ? "" : command, rowCount: command === "UTILITY" ? null : processed, rows, fields };
  }

  /** The session is the worker's backend itself: it ends with the worker. */
  async end(): Promise<void> {}
}
