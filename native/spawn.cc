// Starting a process without copying this one. libuv's spawn, which child_process uses, fork()s: the kernel
// copies the page tables of the whole postmaster (tens of MB of V8 heap) for a child that throws them away
// at its exec, and both processes pay for it, the parent in fork() and the child in exec(). With hundreds
// of runners starting at once that was a tenth of all the CPU the start took. posix_spawn(3) in glibc
// starts the child in this process's memory (clone with CLONE_VM | CLONE_VFORK) until its exec, so its cost
// does not grow with the parent's size.
//
// The child is set up as libuv sets up a child of child_process: every signal back to its default action
// and none blocked, the given descriptors at 0..n-1, optionally in a session of its own. Like fork(), it
// inherits no other descriptor of this process but those without close-on-exec (every one Node and this
// file open has it). Exits are collected by reap(), a waitid() for this pid alone: libuv's own SIGCHLD
// handling waits only for the pids of its handles.
#include "spawn.h"

#include "errors.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace bgworker {

namespace {

using v8::Array;
using v8::Context;
using v8::FunctionCallbackInfo;
using v8::Integer;
using v8::Isolate;
using v8::Local;
using v8::Null;
using v8::Value;

void ReturnPair(const FunctionCallbackInfo<Value>& args, int a, int b) {
  Isolate* isolate = args.GetIsolate();
  Local<Value> values[] = {Integer::New(isolate, a), Integer::New(isolate, b)};
  args.GetReturnValue().Set(Array::New(isolate, values, 2));
}

// Each element of a string array, as C strings; false (with a TypeError thrown) for anything else.
bool Strings(Isolate* isolate, Local<Context> context, Local<Value> value, const char* what,
             std::vector<std::string>* out) {
  if (!value->IsArray()) {
    ThrowType(isolate, std::string("spawn: ") + what + " must be an array of strings");
    return false;
  }
  Local<Array> array = value.As<Array>();
  for (uint32_t i = 0; i < array->Length(); i++) {
    Local<Value> item;
    if (!array->Get(context, i).ToLocal(&item)) return false;  // a getter threw: its exception stands
    if (!item->IsString()) {
      ThrowType(isolate, std::string("spawn: ") + what + "[" + std::to_string(i) + "] must be a string");
      return false;
    }
    v8::String::Utf8Value utf8(isolate, item);
    std::string text(*utf8, utf8.length());
    if (text.find('\0') != std::string::npos) {
      ThrowType(isolate, std::string("spawn: ") + what + "[" + std::to_string(i) + "] must not contain NUL");
      return false;
    }
    out->push_back(text);
  }
  return true;
}

std::vector<char*> Pointers(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  for (std::string& text : strings) pointers.push_back(&text[0]);
  pointers.push_back(nullptr);
  return pointers;
}

}  // namespace

void Pipe(const FunctionCallbackInfo<Value>& args) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return ThrowErrno(args.GetIsolate(), "pipe2", "", errno);
  ReturnPair(args, fds[0], fds[1]);
}

void SocketPair(const FunctionCallbackInfo<Value>& args) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    return ThrowErrno(args.GetIsolate(), "socketpair", "", errno);
  }
  ReturnPair(args, fds[0], fds[1]);
}

// duplicate(fd): a second descriptor for the same open file or socket, close-on-exec.
void Duplicate(const FunctionCallbackInfo<Value>& args) {
  Isolate* isolate = args.GetIsolate();
  if (!args[0]->IsInt32() || args[0].As<v8::Int32>()->Value() < 0) {
    return ThrowType(isolate, "duplicate: fd must be a descriptor");
  }
  int fd = fcntl(args[0].As<v8::Int32>()->Value(), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return ThrowErrno(isolate, "fcntl", "", errno);
  args.GetReturnValue().Set(Integer::New(isolate, fd));
}

// spawn(file: string, argv: string[], env: string[] ("NAME=value"), fds: number[], newSession: boolean):
// the child's pid. The child's descriptor i is this process's fds[i], or /dev/null where fds[i] is -1.
void Spawn(const FunctionCallbackInfo<Value>& args) {
  Isolate* isolate = args.GetIsolate();
  Local<Context> context = isolate->GetCurrentContext();
  if (!args[0]->IsString()) return ThrowType(isolate, "spawn: file must be a string");
  v8::String::Utf8Value fileUtf8(isolate, args[0]);
  std::string file(*fileUtf8, fileUtf8.length());
  if (file.empty() || file.find('\0') != std::string::npos) {
    return ThrowType(isolate, "spawn: file must be a path without NUL");
  }
  std::vector<std::string> argv, env;
  if (!Strings(isolate, context, args[1], "argv", &argv) || !Strings(isolate, context, args[2], "env", &env)) return;
  if (!args[3]->IsArray()) return ThrowType(isolate, "spawn: fds must be an array of descriptors");
  Local<Array> fdArray = args[3].As<Array>();
  std::vector<int> fds;
  for (uint32_t i = 0; i < fdArray->Length(); i++) {
    Local<Value> item;
    if (!fdArray->Get(context, i).ToLocal(&item)) return;
    if (!item->IsInt32() || item.As<v8::Int32>()->Value() < -1) {
      return ThrowType(isolate, "spawn: fds[" + std::to_string(i) + "] must be a descriptor or -1");
    }
    fds.push_back(item.As<v8::Int32>()->Value());
  }
  bool newSession = args[4]->IsTrue();
  const int count = static_cast<int>(fds.size());

  // A source below `count` could be overwritten by an earlier dup2 in the child: such a source is first
  // duplicated above them (close-on-exec, closed again below).
  std::vector<int> moved;
  for (int& fd : fds) {
    if (fd < 0 || fd >= count) continue;
    int high = fcntl(fd, F_DUPFD_CLOEXEC, count);
    if (high < 0) {
      int err = errno;
      for (int done : moved) close(done);
      return ThrowErrno(isolate, "fcntl", std::to_string(fd), err);
    }
    moved.push_back(high);
    fd = high;
  }
  int err = 0;

  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attr);
  for (int target = 0; target < count && err == 0; target++) {
    if (fds[target] < 0) {
      err = posix_spawn_file_actions_addopen(&actions, target, "/dev/null", target == 0 ? O_RDONLY : O_RDWR, 0);
    } else {
      err = posix_spawn_file_actions_adddup2(&actions, fds[target], target);
    }
  }
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  short flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | (newSession ? POSIX_SPAWN_SETSID : 0);
  if (err == 0) err = posix_spawnattr_setsigdefault(&attr, &all);
  if (err == 0) err = posix_spawnattr_setsigmask(&attr, &none);
  if (err == 0) err = posix_spawnattr_setflags(&attr, flags);

  pid_t pid = -1;
  if (err == 0) {
    std::vector<char*> argvPointers = Pointers(argv);
    std::vector<char*> envPointers = Pointers(env);
    err = posix_spawn(&pid, file.c_str(), &actions, &attr, argvPointers.data(), envPointers.data());
  }
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  for (int fd : moved) close(fd);
  if (err != 0) return ThrowErrno(isolate, "posix_spawn", file, err);
  args.GetReturnValue().Set(Integer::New(isolate, pid));
}

void Reap(const FunctionCallbackInfo<Value>& args) {
  Isolate* isolate = args.GetIsolate();
  if (!args[0]->IsInt32() || args[0].As<v8::Int32>()->Value() <= 0) {
    return ThrowType(isolate, "reap: pid must be a positive integer");
  }
  pid_t pid = args[0].As<v8::Int32>()->Value();
  siginfo_t info;
  memset(&info, 0, sizeof info);
  int result;
  do {
    result = waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG);
  } while (result != 0 && errno == EINTR);
  if (result != 0) return ThrowErrno(isolate, "waitid", std::to_string(pid), errno);
  if (info.si_pid == 0) return;  // still running
  Local<Value> values[2];
  if (info.si_code == CLD_EXITED) {
    values[0] = Integer::New(isolate, info.si_status);
    values[1] = Null(isolate);
  } else {
    values[0] = Null(isolate);
    values[1] = Integer::New(isolate, info.si_status);
  }
  args.GetReturnValue().Set(Array::New(isolate, values, 2));
}

}  // namespace bgworker
