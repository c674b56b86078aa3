/**
 * Makes the SPI session of this process (runtime/spi.ts) use the backend's own SPI: the session asks the
 * client factory that this installs, on `globalThis` under `Symbol.for("bgworker.spi-client-factory")`
 * (every copy of the package in the process shares it), instead of opening a node-postgres connection.
 */
import { sessionTypes } from "../runtime/spi.js";
import { InServerClient } from "./spi-client.js";
import type { BackendTransport } from "./transport.js";

export const SPI_CLIENT_FACTORY = Symbol.for("bgworker.spi-client-factory");

export interface SpiClientConfig {
  readonly database?: string | undefined;
  readonly user?: string | undefined;
}

type Slots = { [SPI_CLIENT_FACTORY]?: (config: SpiClientConfig) => InServerClient };

export function installInServerSpi(transport: BackendTransport): void {
  (globalThis as typeof globalThis & Slots)[SPI_CLIENT_FACTORY] = (config) =>
    new InServerClient(transport, { database: config.database, user: config.user, types: sessionTypes });
}
