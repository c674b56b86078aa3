// Runs when bgworker's native addon has no prebuilt binary for this platform and Node, and building it failed
// (no C++ compiler, make or python3): the install still succeeds, since everything but shared memory works.
"use strict";
console.warn(
  "bgworker: the shared-memory addon was not built (no prebuilt binary for " +
    `${process.platform}-${process.arch} Node ${process.versions.node}, and no working C++ toolchain): ` +
    "everything but shared memory works; for shared memory install g++, make and python3, then run npm rebuild bgworker",
);
