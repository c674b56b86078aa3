# The native addon (native/: shared memory, the orphan guard, runners started with posix_spawn), Linux only.
# It compiles without a warning under -Wall -Wextra against the headers of Node 20, 22, 24 and 26, with two
# suppressions, both for code in Node's own headers: -Wno-cast-function-type for the function cast inside
# node.h's NODE_MODULE_INIT, and -Wno-unused-parameter (set by Node's common.gypi) for the unused parameters
# of inline functions in v8*.h and node.h.
{
  "targets": [
    {
      "target_name": "bgworker_shm",
      "sources": ["native/shm.cc", "native/orphan.cc", "native/spawn.cc"],
      "cflags_cc": ["-Wall", "-Wextra", "-Wno-cast-function-type"],
      "libraries": ["-lrt"],
      "conditions": [["OS!='linux'", {"type": "none"}]]
    }
  ]
}
