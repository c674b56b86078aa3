// Errors thrown by the addon's functions, shared by its files.
#pragma once

#include <v8.h>

#include <string>

namespace bgworker {

v8::Local<v8::String> Str(v8::Isolate* isolate, const char* text);

// Throws `Error("<syscall>("<name>") failed: <strerror> (<CODE>)")` with Node's usual code/errno/syscall
// properties, so that callers may test `error.code === "EEXIST"`.
void ThrowErrno(v8::Isolate* isolate, const char* syscall, const std::string& name, int err);

void ThrowType(v8::Isolate* isolate, const std::string& message);

}  // namespace bgworker
