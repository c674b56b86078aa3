{
  "targets": [
    {
      "target_name": "bgworker_shm",
      "sources": ["native/shm.cc"],
      "cflags_cc": ["-Wall", "-Wextra", "-Wno-cast-function-type"],
      "libraries": ["-lrt"],
      "conditions": [["OS!='linux'", {"type": "none"}]]
    }
  ]
}
