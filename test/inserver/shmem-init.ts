/** An extension module whose _PG_init requests shared memory, which in-server mode refuses (SPEC §9). */
import { PgAtomic, pgShmemInit } from "bgworker";

export function _PG_init(): void {
  pgShmemInit(new PgAtomic("init hits", "u64"));
}
