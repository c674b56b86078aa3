/** The benchmark's extension: requests the shared memory of ./shared.ts; every worker is dynamic. */
import { pgShmemInit } from "bgworker";
import { ALL } from "./shared.js";

export function _PG_init(): void {
  pgShmemInit(...ALL);
}
