/**
 * The type of `spiClient()`: the part of node-postgres's `Client` that a worker needs beyond `Spi` (any query,
 * LISTEN/NOTIFY, the session's events), written here so that a project type-checks against bgworker without
 * installing `@types/pg`. The object is a real `pg.Client`; a project that has `@types/pg` may cast it to one.
 */

/** A query's outcome, as node-postgres reports it. */
export interface RawQueryResult<R = Record<string, unknown>> {
  readonly rows: R[];
  /** Rows affected or returned; null for commands that report none. */
  readonly rowCount: number | null;
  /** `SELECT`, `INSERT`, `LISTEN`, ... */
  readonly command: string;
  readonly fields: readonly { readonly name: string; readonly dataTypeID: number }[];
}

/** A `NOTIFY` received on a channel this session listens to. */
export interface RawNotification {
  readonly processId: number;
  readonly channel: string;
  readonly payload?: string | undefined;
}

export interface RawClient {
  query<R = Record<string, unknown>>(text: string, values?: unknown[]): Promise<RawQueryResult<R>>;
  on(event: "notification", listener: (message: RawNotification) => void): this;
  on(event: "error", listener: (error: Error) => void): this;
  on(event: "end", listener: () => void): this;
  off(event: "notification", listener: (message: RawNotification) => void): this;
  off(event: "error", listener: (error: Error) => void): this;
  off(event: "end", listener: () => void): this;
}
