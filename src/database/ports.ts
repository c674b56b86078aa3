/** Free loopback ports for managed clusters. */
import { createServer } from "node:net";
import { makeError } from "../errors.js";

/** Whether nothing listens on 127.0.0.1:`port` right now (a bind test: the server binds the same address). */
export function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen({ host: "127.0.0.1", port, exclusive: true }, () => {
      server.close(() => resolve(true));
    });
  });
}

/** A port the kernel says is free on 127.0.0.1 now. Another process may take it before the server binds;
 * callers retry the start once when that happens. */
export function pickFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    const noPort = (why: string): Error => makeError(Error, "ERR_BGWORKER_NO_FREE_PORT", `could not pick a free loopback port for the managed server${why}`);
    server.once("error", (error) => reject(noPort(`: ${error.message}`)));
    server.listen({ host: "127.0.0.1", port: 0, exclusive: true }, () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(noPort(""))));
    });
  });
}

/** `preferred` if it is free, else a fresh free port. */
export async function choosePort(preferred: number | null): Promise<number> {
  if (preferred !== null && (await portIsFree(preferred))) return preferred;
  return pickFreePort();
}
