/**
 * Makes the SPI session of this process (runtime/spi.ts) use the backend's own SPI: the session asks the
 * client factory that this installs, on `globalThis` under `Symbol.for("bgworker.spi-client-factory")`
 * (every copy of the package in the process shares it), instead of opening a node-postgres connection.
 */
import { InServerClient, type TypeParsers } from "./spi-client.js";
import type { BackendTransport } from "./transport.js";

export const SPI_CLIENT_FACTORY = Symbol.for("bgworker.spi-client-factory");

export interface SpiClientConfig {
  readonly database?: string | undefined;
  readonly user?: string | undefined;
  /** The parsers of the copy of the package that opens the session: it is the copy that loaded `pg`. */
  readonly types: TypeParsers;
}

type Slots = { [SPI_CLIENT_FACTORY]?: (config: SpiClientConfig) => InServerClient };

export function installInServerSpi(transport: BackendTransport): void {
  // A worker's library may get another copy of the package than this process's (a CommonJS library's
  // `require("bgworker")`), whose session loads its own `pg`: its parsers come with its config.
  (globalThis as typeof globalThis & Slots)[SPI_CLIENT_FACTORY] = (config) =>
    new InServerClient(transport, { database: config.database, user: config.user, types: config.types });
}
