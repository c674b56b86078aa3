// bgworker_shm: the project's native code in Node (the in-server extension in pg/ is the other). It maps a
// POSIX shared memory segment into this process and hands it to JavaScript as a SharedArrayBuffer, so that
// `Atomics` operate on memory that other processes map too; and it exposes the futex so that a process
// waiting for a lock sleeps instead of spinning. Everything else (layouts, locks, attachment) is TypeScript
// in src/shmem/. Two process-level extras live beside it: a worker's guard against outliving its postmaster
// (orphan.cc, and setParentDeathSignal here), and the postmaster's start of runners with posix_spawn
// (spawn.cc). This file registers all of them.
//
// It compiles against the headers of Node 20, 22, 24 and 26 (V8 11.3 to 14.6); where V8's API differs
// between them the code is guarded by V8_MAJOR_VERSION.
//
// It uses V8's API rather than Node-API because Node-API cannot create a SharedArrayBuffer over
// memory that it does not allocate.

#include <node.h>
#include <uv.h>
#include <v8.h>

#include "errors.h"
#include "orphan.h"
#include "spawn.h"

#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace bgworker {

using v8::Context;
using v8::Exception;
using v8::Integer;
using v8::Isolate;
using v8::Local;
using v8::Object;
using v8::String;

Local<String> Str(Isolate* isolate, const char* text) {
  return String::NewFromUtf8(isolate, text).ToLocalChecked();
}

void ThrowErrno(Isolate* isolate, const char* syscall, const std::string& name, int err) {
  const char* code = uv_err_name(-err);
  std::string message = std::string(syscall) + "(";
  if (!name.empty()) message += "\"" + name + "\"";
  message += ") failed: " + std::string(strerror(err)) + " (" + code + ")";
  Local<Context> context = isolate->GetCurrentContext();
  Local<Object> error = Exception::Error(Str(isolate, message.c_str())).As<Object>();
  error->Set(context, Str(isolate, "code"), Str(isolate, code)).Check();
  error->Set(context, Str(isolate, "errno"), Integer::New(isolate, -err)).Check();
  error->Set(context, Str(isolate, "syscall"), Str(isolate, syscall)).Check();
  isolate->ThrowException(error);
}

void ThrowType(Isolate* isolate, const std::string& message) {
  isolate->ThrowException(Exception::TypeError(Str(isolate, message.c_str())));
}

}  // namespace bgworker

namespace {

using v8::BackingStore;
using v8::Context;
using v8::Exception;
using v8::FunctionCallbackInfo;
using v8::FunctionTemplate;
using v8::Integer;
using v8::Isolate;
using v8::Local;
using v8::Object;
using v8::SharedArrayBuffer;
using v8::String;
using v8::Value;
using bgworker::Str;
using bgworker::ThrowErrno;
using bgworker::ThrowType;

// Every live mapping made here, so that unmap() refuses buffers it did not make. "attached" turns
// false when unmap() has swapped the shared pages for private ones (see Unmap).
struct Region {
  size_t length;
  bool attached;
};
std::mutex regions_mutex;
std::map<void*, Region> regions;

void ThrowRange(Isolate* isolate, const std::string& message) {
  isolate->ThrowException(Exception::RangeError(Str(isolate, message.c_str())));
}

// A segment name as shm_open(3) wants it: one leading slash, no other slash, at most NAME_MAX bytes.
bool ArgName(const FunctionCallbackInfo<Value>& args, int index, const char* fn, std::string* out) {
  Isolate* isolate = args.GetIsolate();
  if (!args[index]->IsString()) {
    ThrowType(isolate, std::string(fn) + ": name must be a string");
    return false;
  }
  String::Utf8Value utf8(isolate, args[index]);
  std::string name(*utf8, utf8.length());
  if (name.size() < 2 || name[0] != '/' || name.find('/', 1) != std::string::npos ||
      name.find('\0') != std::string::npos || name.size() > NAME_MAX) {
    ThrowType(isolate, std::string(fn) + ": name \"" + name +
                           "\" must be \"/\" followed by 1 to 254 bytes without \"/\" or NUL");
    return false;
  }
  *out = name;
  return true;
}

// A number as JavaScript would print it ("99", "0.5"), not std::to_string's "99.000000".
std::string Num(double value) {
  char text[32];
  snprintf(text, sizeof text, "%.17g", value);
  return text;
}

// A non-negative integer number below `limit`.
bool ArgInteger(const FunctionCallbackInfo<Value>& args, int index, const char* fn, const char* what,
                double limit, double* out) {
  Isolate* isolate = args.GetIsolate();
  if (!args[index]->IsNumber()) {
    ThrowType(isolate, std::string(fn) + ": " + what + " must be a number");
    return false;
  }
  double value = args[index].As<v8::Number>()->Value();
  if (!(value >= 0) || value >= limit || std::floor(value) != value) {
    ThrowRange(isolate, std::string(fn) + ": " + what + " " + Num(value) + " must be an integer from 0 to " +
                            Num(limit - 1));
    return false;
  }
  *out = value;
  return true;
}

void Release(void* data, size_t length, void* /*deleter_data*/) {
  // Called by V8 when the last SharedArrayBuffer over the mapping is collected, on any thread. The
  // mutex is held across munmap so that no new mapping can reuse the address before the entry is gone.
  std::lock_guard<std::mutex> lock(regions_mutex);
  regions.erase(data);
  munmap(data, length);  // nothing can be reported from a collector; the range is ours and valid
}

Local<SharedArrayBuffer> Wrap(Isolate* isolate, void* data, size_t length) {
  {
    std::lock_guard<std::mutex> lock(regions_mutex);
    regions[data] = Region{length, true};
  }
  std::unique_ptr<BackingStore> store = SharedArrayBuffer::NewBackingStore(data, length, Release, nullptr);
  return SharedArrayBuffer::New(isolate, std::move(store));
}

// Maps the open descriptor `fd` and closes it (the mapping keeps the segment alive). On failure it
// unlinks the segment if `created`, so that a failed create() leaves nothing behind.
void MapAndReturn(const FunctionCallbackInfo<Value>& args, int fd, const std::string& name, size_t length,
                  bool created) {
  Isolate* isolate = args.GetIsolate();
  void* data = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (data == MAP_FAILED) {
    int err = errno;
    close(fd);
    if (created) shm_unlink(name.c_str());
    return ThrowErrno(isolate, "mmap", name, err);
  }
  if (close(fd) != 0) {
    int err = errno;
    munmap(data, length);
    if (created) shm_unlink(name.c_str());
    return ThrowErrno(isolate, "close", name, err);
  }
  args.GetReturnValue().Set(Wrap(isolate, data, length));
}

// create(name, size): a new segment (O_CREAT|O_EXCL, mode 0600), zero-filled by ftruncate.
void Create(const FunctionCallbackInfo<Value>& args) {
  Isolate* isolate = args.GetIsolate();
  std::string name;
  double size;
  if (!ArgName(args, 0, "create", &name)) return;
  if (!ArgInteger(args, 1, "create", "size", 9007199254740992.0, &size)) return;
  if (size < 1) return ThrowRange(isolate, "create: size 0 must be at least 1 byte");
  int fd = shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  if (fd < 0) return ThrowErrno(isolate, "shm_open", name, errno);
  if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
    int err = errno;
    close(fd);
    shm_unlink(name.c_str());
    return ThrowErrno(isolate, "ftruncate", name, err);
  }
  MapAndReturn(args, fd, name, static_cast<size_t>(size), true);
}

// open(name): an existing segment, mapped whole (its size is the segment's).
void Open(const FunctionCallbackInfo<Value>& args) {
  Isolate* isolate = args.GetIsolate();
  std::string name;
  if (!ArgName(args, 0, "open", &name)) return;
  int fd = shm_open(name.c_str(), O_RDWR, 0);
  if (fd < 0) return ThrowErrno(isolate, "shm_open", name, errno);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    return ThrowErrno(isolate, "fstat", name, err);
  }
  if (st.st_size <= 0) {
    close(fd);
    return ThrowErrno(isolate, "open", name, EINVAL);  // an empty segment is not one of ours
  }
  MapAndReturn(args, fd, name, static_cast<size_t>(st.st_size), false);
}

// unlink(name) -> true, or false if no such segment (unlinking twice is not an error for callers).
void Unlink(const FunctionCallbackInfo<Value>& args) {
  Isolate* isolate = args.GetIsolate();
  std::string name;
  if (!ArgName(args, 0, "unlink", &name)) return;
  if (shm_unlink(name.c_str()) != 0) {
    int err = errno;
    if (err == ENOENT) return args.GetReturnValue().Set(false);
    return ThrowErrno(isolate, "shm_unlink", name, err);
  }
  args.GetReturnValue().Set(true);
}

// unmap(sab) -> true, or false if already unmapped. The shared pages are replaced, atomically
// (MAP_FIXED), by private zero pages rather than unmapped: JavaScript may still hold the buffer, and a
// touch of an unmapped range would kill the process, while a touch of private pages is harmless and
// can no longer reach the segment. V8 frees the private pages when it collects the buffer.
void Unmap(const FunctionCallbackInfo<Value>& args) {
  Isolate* isolate = args.GetIsolate();
  if (!args[0]->IsSharedArrayBuffer()) return ThrowType(isolate, "unmap: buffer must be a SharedArrayBuffer");
  std::shared_ptr<BackingStore> store = args[0].As<SharedArrayBuffer>()->GetBackingStore();
  std::lock_guard<std::mutex> lock(regions_mutex);
  auto found = regions.find(store->Data());
  if (found == regions.end() || found->second.length != store->ByteLength()) {
    return ThrowType(isolate, "unmap: buffer is not a segment mapped by create() or open()");
  }
  if (!found->second.attached) return args.GetReturnValue().Set(false);
  void* replaced = mmap(store->Data(), found->second.length, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  if (replaced == MAP_FAILED) return ThrowErrno(isolate, "mmap", "", errno);
  found->second.attached = false;
  args.GetReturnValue().Set(true);
}

// The 32-bit word at byteIndex of a SharedArrayBuffer, checked for alignment and bounds.
uint32_t* ArgWord(const FunctionCallbackInfo<Value>& args, const char* fn) {
  Isolate* isolate = args.GetIsolate();
  if (!args[0]->IsSharedArrayBuffer()) {
    ThrowType(isolate, std::string(fn) + ": buffer must be a SharedArrayBuffer");
    return nullptr;
  }
  std::shared_ptr<BackingStore> store = args[0].As<SharedArrayBuffer>()->GetBackingStore();
  double index;
  if (!ArgInteger(args, 1, fn, "byteIndex", 9007199254740992.0, &index)) return nullptr;
  if (static_cast<uint64_t>(index) % 4 != 0 || index + 4 > static_cast<double>(store->ByteLength())) {
    ThrowRange(isolate, std::string(fn) + ": byteIndex " + std::to_string(static_cast<uint64_t>(index)) +
                            " must be a multiple of 4 with 4 bytes inside the buffer of " +
                            std::to_string(store->ByteLength()) + " bytes");
    return nullptr;
  }
  return reinterpret_cast<uint32_t*>(static_cast<char*>(store->Data()) + static_cast<size_t>(index));
}

double MonotonicMs() {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);  // cannot fail for CLOCK_MONOTONIC with a valid pointer
  return static_cast<double>(now.tv_sec) * 1e3 + static_cast<double>(now.tv_nsec) / 1e6;
}

// wait(sab, byteIndex, expected, timeoutMs) -> "ok" | "not-equal" | "timed-out", as Atomics.wait but
// across processes: FUTEX_WAIT without FUTEX_PRIVATE_FLAG keys the wait on the physical page, so a
// wake() from any process mapping the segment reaches it. A negative or infinite timeout waits forever.
// "ok" may be a spurious wake-up: callers re-check their condition.
void Wait(const FunctionCallbackInfo<Value>& args) {
  Isolate* isolate = args.GetIsolate();
  uint32_t* word = ArgWord(args, "wait");
  if (word == nullptr) return;
  if (!args[2]->IsNumber()) return ThrowType(isolate, "wait: expected must be a number");
  double expected = args[2].As<v8::Number>()->Value();
  if (!(expected >= -2147483648.0 && expected <= 4294967295.0) || std::floor(expected) != expected) {
    return ThrowRange(isolate, "wait: expected " + Num(expected) +
                                   " must be an integer from -2147483648 to 4294967295 (a 32-bit word)");
  }
  uint32_t value = static_cast<uint32_t>(static_cast<int64_t>(expected));
  if (!args[3]->IsNumber()) return ThrowType(isolate, "wait: timeoutMs must be a number");
  double timeout = args[3].As<v8::Number>()->Value();
  if (std::isnan(timeout)) return ThrowRange(isolate, "wait: timeoutMs NaN must be a number of milliseconds");
  bool forever = timeout < 0 || std::isinf(timeout);
  double deadline = forever ? 0 : MonotonicMs() + timeout;
  for (;;) {
    struct timespec relative;
    if (!forever) {
      double left = deadline - MonotonicMs();
      if (left <= 0) return args.GetReturnValue().Set(Str(isolate, "timed-out"));
      relative.tv_sec = static_cast<time_t>(left / 1e3);
      relative.tv_nsec = static_cast<long>((left - static_cast<double>(relative.tv_sec) * 1e3) * 1e6);
    }
    long result = syscall(SYS_futex, word, FUTEX_WAIT, value, forever ? nullptr : &relative, nullptr, 0);
    if (result == 0) return args.GetReturnValue().Set(Str(isolate, "ok"));
    int err = errno;
    if (err == EAGAIN) return args.GetReturnValue().Set(Str(isolate, "not-equal"));
    if (err == ETIMEDOUT) return args.GetReturnValue().Set(Str(isolate, "timed-out"));
    // A signal for Node's own handlers interrupted the wait: wait again for the time that is left.
    if (err != EINTR) return ThrowErrno(isolate, "futex", "", err);
  }
}

// wake(sab, byteIndex, count) -> how many waiters were woken. An infinite count wakes all.
void Wake(const FunctionCallbackInfo<Value>& args) {
  Isolate* isolate = args.GetIsolate();
  uint32_t* word = ArgWord(args, "wake");
  if (word == nullptr) return;
  int count = INT_MAX;
  if (!(args[2]->IsNumber() && std::isinf(args[2].As<v8::Number>()->Value()) &&
        args[2].As<v8::Number>()->Value() > 0)) {
    double value;
    if (!ArgInteger(args, 2, "wake", "count", 2147483648.0, &value)) return;
    count = static_cast<int>(value);
  }
  long woken = syscall(SYS_futex, word, FUTEX_WAKE, count, nullptr, nullptr, 0);
  if (woken < 0) return ThrowErrno(isolate, "futex", "", errno);
  args.GetReturnValue().Set(static_cast<double>(woken));
}

// setParentDeathSignal(signal): prctl(PR_SET_PDEATHSIG, signal), so that the kernel sends `signal` to this
// process when the thread that forked it exits (0 clears it). It applies to this process only (a child
// does not inherit it) and is reset by an exec of a set-user-ID program.
void SetParentDeathSignal(const FunctionCallbackInfo<Value>& args) {
  Isolate* isolate = args.GetIsolate();
  double signal;
  if (!ArgInteger(args, 0, "setParentDeathSignal", "signal", 65.0, &signal)) return;
  if (prctl(PR_SET_PDEATHSIG, static_cast<unsigned long>(signal), 0UL, 0UL, 0UL) != 0) {
    return ThrowErrno(isolate, "prctl", "", errno);
  }
}

void Export(Local<Object> exports, Local<Context> context, const char* name, v8::FunctionCallback fn) {
#if V8_MAJOR_VERSION >= 14
  // V8 14 (Node 26) removed Context::GetIsolate(); the module is initialised in its isolate's thread.
  Isolate* isolate = Isolate::GetCurrent();
#else
  Isolate* isolate = context->GetIsolate();
#endif
  exports->Set(context, Str(isolate, name), FunctionTemplate::New(isolate, fn)->GetFunction(context).ToLocalChecked())
      .Check();
}

}  // namespace

// Context-aware, so that worker threads may load it too.
NODE_MODULE_INIT(/* exports, module, context */) {
  Export(exports, context, "create", Create);
  Export(exports, context, "open", Open);
  Export(exports, context, "unlink", Unlink);
  Export(exports, context, "unmap", Unmap);
  Export(exports, context, "wait", Wait);
  Export(exports, context, "wake", Wake);
  Export(exports, context, "setParentDeathSignal", SetParentDeathSignal);
  Export(exports, context, "armOrphanKill", bgworker::ArmOrphanKill);
  Export(exports, context, "pipe", bgworker::Pipe);
  Export(exports, context, "socketPair", bgworker::SocketPair);
  Export(exports, context, "duplicate", bgworker::Duplicate);
  Export(exports, context, "spawn", bgworker::Spawn);
  Export(exports, context, "reap", bgworker::Reap);
}
