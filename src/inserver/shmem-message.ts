/** What in-server mode says about shared memory (SPEC §8), which it does not provide in this version. */
export const NO_SHMEM_IN_SERVER =
  "shared memory (SPEC §8) is not available in in-server mode: pgShmemInit() and enableShmemAccess() need `bgworker start`";
