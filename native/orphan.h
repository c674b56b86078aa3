// The orphan backstop of a worker process (orphan.cc): exported by the addon as armOrphanKill.
#pragma once

#include <v8.h>

namespace bgworker {

// armOrphanKill(graceMs: integer 1..60000): true once armed (idempotent); throws on bad input or a failed syscall.
void ArmOrphanKill(const v8::FunctionCallbackInfo<v8::Value>& args);

}  // namespace bgworker
