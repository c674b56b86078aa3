// armOrphanKill(graceMs): the kernel ends this worker `graceMs` after its postmaster dies, however both are
// doing, with no thread and no polling. A worker learns of its postmaster's death at once through its IPC
// channel and ends itself; this is the backstop for a worker whose JavaScript never yields to its event loop.
//
// How: a POSIX timer that delivers SIGKILL is created now, disarmed; the parent-death signal is a real-time
// signal whose handler only arms that timer (timer_settime is async-signal-safe). Node never sees the signal:
// the handler is installed with sigaction before any JavaScript could listen for it.
#include "orphan.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <cmath>
#include <string>

namespace bgworker {

namespace {

timer_t kill_timer;
struct itimerspec grace;
bool armed = false;

void OnParentDeath(int) {
  timer_settime(kill_timer, 0, &grace, nullptr);
}

// The signal that carries the parent's death: the highest real-time signal, which neither Node nor libuv use.
int OrphanSignal() {
  return SIGRTMAX;
}

}  // namespace

void ArmOrphanKill(const v8::FunctionCallbackInfo<v8::Value>& args) {
  v8::Isolate* isolate = args.GetIsolate();
  auto fail = [isolate](const std::string& message, bool range) {
    v8::Local<v8::String> text = v8::String::NewFromUtf8(isolate, message.c_str()).ToLocalChecked();
    isolate->ThrowException(range ? v8::Exception::RangeError(text) : v8::Exception::Error(text));
  };
  if (args.Length() < 1 || !args[0]->IsNumber()) return fail("armOrphanKill: graceMs must be a number", false);
  double ms = args[0].As<v8::Number>()->Value();
  if (!(ms >= 1 && ms <= 60000) || std::floor(ms) != ms) {
    return fail("armOrphanKill: graceMs must be an integer from 1 to 60000", true);
  }
  struct itimerspec wanted;
  memset(&wanted, 0, sizeof wanted);
  wanted.it_value.tv_sec = static_cast<time_t>(ms / 1000);
  wanted.it_value.tv_nsec = static_cast<long>(std::fmod(ms, 1000.0) * 1000000L);
  // Armed already (a spare that became a worker whose grace is shorter): only the grace changes. Its two
  // fields are written before any parent-death signal could read them, or after: a worker is never left
  // without a timer.
  if (armed) {
    grace = wanted;
    return args.GetReturnValue().Set(true);
  }

  struct sigevent event;
  memset(&event, 0, sizeof event);
  event.sigev_notify = SIGEV_SIGNAL;
  event.sigev_signo = SIGKILL;
  if (timer_create(CLOCK_MONOTONIC, &event, &kill_timer) != 0) {
    return fail(std::string("armOrphanKill: timer_create: ") + strerror(errno), false);
  }
  grace = wanted;

  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = OnParentDeath;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  if (sigaction(OrphanSignal(), &action, nullptr) != 0 ||
      prctl(PR_SET_PDEATHSIG, static_cast<unsigned long>(OrphanSignal()), 0UL, 0UL, 0UL) != 0) {
    int err = errno;
    timer_delete(kill_timer);
    return fail(std::string("armOrphanKill: ") + strerror(err), false);
  }
  armed = true;
  // The parent may have died before prctl: then no signal comes, and the caller checks process.ppid.
  args.GetReturnValue().Set(true);
}

}  // namespace bgworker
