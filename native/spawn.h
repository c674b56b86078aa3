// Starting worker runners without copying the postmaster (spawn.cc): exported by the addon.
#pragma once

#include <v8.h>

namespace bgworker {

// pipe(): [readFd, writeFd], both close-on-exec.
void Pipe(const v8::FunctionCallbackInfo<v8::Value>& args);
// socketPair(): [fd, fd], a connected AF_UNIX stream pair, both close-on-exec.
void SocketPair(const v8::FunctionCallbackInfo<v8::Value>& args);
// duplicate(fd): a second descriptor for the same open file or socket, close-on-exec.
void Duplicate(const v8::FunctionCallbackInfo<v8::Value>& args);
// spawn(file, argv, env, fds, newSession): the child's pid. See spawn.cc.
void Spawn(const v8::FunctionCallbackInfo<v8::Value>& args);
// reap(pid): undefined while the child runs, else [code, null] or [null, signalNumber], once.
void Reap(const v8::FunctionCallbackInfo<v8::Value>& args);

}  // namespace bgworker
