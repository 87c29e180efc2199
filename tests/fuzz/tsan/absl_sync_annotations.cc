// ThreadSanitizer annotations for Debian's uninstrumented Abseil
// synchronisation primitives (linked into every test by --config=tsan, see
// .bazelrc and tests/fuzz/README.md).
//
// libabsl_synchronization.so is not built with -fsanitize=thread, so TSan
// never sees absl::Mutex lock/unlock or absl::Notification and reports every
// access guarded by them as a data race. The linker redirects our code's
// calls to these functions (-Wl,--wrap=SYMBOL) to the __wrap_SYMBOL
// functions below, which tell TSan about the operation through its mutex
// annotation interface and then call the real function (__real_SYMBOL).
// Calls made inside the Abseil and gRPC shared libraries stay invisible, so
// TSan runs only over tests whose threads meet in our code.
#include <sanitizer/tsan_interface.h>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

using absl::Condition;
using absl::CondVar;
using absl::Duration;
using absl::Mutex;
using absl::Notification;
using absl::Time;

namespace {

// Await and CondVar::Wait release the mutex and take it again; the real
// call, with the condition evaluations Abseil runs inside it, sits between
// pre_lock and post_lock, where TSan ignores accesses.
void BeforeWait(void* mu) {
  __tsan_mutex_pre_unlock(mu, 0);
  __tsan_mutex_post_unlock(mu, 0);
  __tsan_mutex_pre_lock(mu, 0);
}
void AfterWait(void* mu) { __tsan_mutex_post_lock(mu, 0, 0); }

}  // namespace

extern "C" {

void __real__ZN4absl7debian35Mutex4LockEv(Mutex* mu);
void __wrap__ZN4absl7debian35Mutex4LockEv(Mutex* mu) {
  __tsan_mutex_pre_lock(mu, 0);
  __real__ZN4absl7debian35Mutex4LockEv(mu);
  __tsan_mutex_post_lock(mu, 0, 0);
}

void __real__ZN4absl7debian35Mutex10ReaderLockEv(Mutex* mu);
void __wrap__ZN4absl7debian35Mutex10ReaderLockEv(Mutex* mu) {
  __tsan_mutex_pre_lock(mu, __tsan_mutex_read_lock);
  __real__ZN4absl7debian35Mutex10ReaderLockEv(mu);
  __tsan_mutex_post_lock(mu, __tsan_mutex_read_lock, 0);
}

bool __real__ZN4absl7debian35Mutex7TryLockEv(Mutex* mu);
bool __wrap__ZN4absl7debian35Mutex7TryLockEv(Mutex* mu) {
  __tsan_mutex_pre_lock(mu, __tsan_mutex_try_lock);
  bool r = __real__ZN4absl7debian35Mutex7TryLockEv(mu);
  __tsan_mutex_post_lock(
      mu,
      r ? __tsan_mutex_try_lock
        : __tsan_mutex_try_lock | __tsan_mutex_try_lock_failed,
      0);
  return r;
}

bool __real__ZN4absl7debian35Mutex13ReaderTryLockEv(Mutex* mu);
bool __wrap__ZN4absl7debian35Mutex13ReaderTryLockEv(Mutex* mu) {
  __tsan_mutex_pre_lock(mu, __tsan_mutex_try_read_lock);
  bool r = __real__ZN4absl7debian35Mutex13ReaderTryLockEv(mu);
  __tsan_mutex_post_lock(
      mu, r ? __tsan_mutex_try_read_lock : __tsan_mutex_try_read_lock_failed,
      0);
  return r;
}

void __real__ZN4absl7debian35Mutex6UnlockEv(Mutex* mu);
void __wrap__ZN4absl7debian35Mutex6UnlockEv(Mutex* mu) {
  __tsan_mutex_pre_unlock(mu, 0);
  __real__ZN4absl7debian35Mutex6UnlockEv(mu);
  __tsan_mutex_post_unlock(mu, 0);
}

void __real__ZN4absl7debian35Mutex12ReaderUnlockEv(Mutex* mu);
void __wrap__ZN4absl7debian35Mutex12ReaderUnlockEv(Mutex* mu) {
  __tsan_mutex_pre_unlock(mu, __tsan_mutex_read_lock);
  __real__ZN4absl7debian35Mutex12ReaderUnlockEv(mu);
  __tsan_mutex_post_unlock(mu, __tsan_mutex_read_lock);
}

void __real__ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE(
    Mutex* mu, const Condition& c);
void __wrap__ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE(
    Mutex* mu, const Condition& c) {
  __tsan_mutex_pre_lock(mu, 0);
  __real__ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE(mu, c);
  __tsan_mutex_post_lock(mu, 0, 0);
}

void __real__ZN4absl7debian35Mutex14ReaderLockWhenERKNS0_9ConditionE(
    Mutex* mu, const Condition& c);
void __wrap__ZN4absl7debian35Mutex14ReaderLockWhenERKNS0_9ConditionE(
    Mutex* mu, const Condition& c) {
  __tsan_mutex_pre_lock(mu, __tsan_mutex_read_lock);
  __real__ZN4absl7debian35Mutex14ReaderLockWhenERKNS0_9ConditionE(mu, c);
  __tsan_mutex_post_lock(mu, __tsan_mutex_read_lock, 0);
}

bool __real__ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE(
    Mutex* mu, const Condition& c, Duration d);
bool __wrap__ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE(
    Mutex* mu, const Condition& c, Duration d) {
  __tsan_mutex_pre_lock(mu, 0);
  bool r =
      __real__ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE(
          mu, c, d);
  __tsan_mutex_post_lock(mu, 0, 0);
  return r;
}

bool __real__ZN4absl7debian35Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE(
    Mutex* mu, const Condition& c, Time t);
bool __wrap__ZN4absl7debian35Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE(
    Mutex* mu, const Condition& c, Time t) {
  __tsan_mutex_pre_lock(mu, 0);
  bool r =
      __real__ZN4absl7debian35Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE(
          mu, c, t);
  __tsan_mutex_post_lock(mu, 0, 0);
  return r;
}

void __real__ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE(Mutex* mu,
                                                           const Condition& c);
void __wrap__ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE(Mutex* mu,
                                                           const Condition& c) {
  BeforeWait(mu);
  __real__ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE(mu, c);
  AfterWait(mu);
}

bool __real__ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE(
    Mutex* mu, const Condition& c, Duration d);
bool __wrap__ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE(
    Mutex* mu, const Condition& c, Duration d) {
  BeforeWait(mu);
  bool r =
      __real__ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE(
          mu, c, d);
  AfterWait(mu);
  return r;
}

bool __real__ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE(
    Mutex* mu, const Condition& c, Time t);
bool __wrap__ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE(
    Mutex* mu, const Condition& c, Time t) {
  BeforeWait(mu);
  bool r =
      __real__ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE(
          mu, c, t);
  AfterWait(mu);
  return r;
}

void __real__ZN4absl7debian35MutexD1Ev(Mutex* mu);
void __wrap__ZN4absl7debian35MutexD1Ev(Mutex* mu) {
  __tsan_mutex_destroy(mu, 0);
  __real__ZN4absl7debian35MutexD1Ev(mu);
}

void __real__ZN4absl7debian37CondVar4WaitEPNS0_5MutexE(CondVar* cv, Mutex* mu);
void __wrap__ZN4absl7debian37CondVar4WaitEPNS0_5MutexE(CondVar* cv, Mutex* mu) {
  BeforeWait(mu);
  __real__ZN4absl7debian37CondVar4WaitEPNS0_5MutexE(cv, mu);
  AfterWait(mu);
}

bool __real__ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE(
    CondVar* cv, Mutex* mu, Duration d);
bool __wrap__ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE(
    CondVar* cv, Mutex* mu, Duration d) {
  BeforeWait(mu);
  bool r =
      __real__ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE(
          cv, mu, d);
  AfterWait(mu);
  return r;
}

bool __real__ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE(
    CondVar* cv, Mutex* mu, Time t);
bool __wrap__ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE(
    CondVar* cv, Mutex* mu, Time t) {
  BeforeWait(mu);
  bool r =
      __real__ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE(
          cv, mu, t);
  AfterWait(mu);
  return r;
}

void __real__ZN4absl7debian312Notification6NotifyEv(Notification* n);
void __wrap__ZN4absl7debian312Notification6NotifyEv(Notification* n) {
  __tsan_release(n);
  __real__ZN4absl7debian312Notification6NotifyEv(n);
}

void __real__ZNK4absl7debian312Notification19WaitForNotificationEv(
    const Notification* n);
void __wrap__ZNK4absl7debian312Notification19WaitForNotificationEv(
    const Notification* n) {
  __real__ZNK4absl7debian312Notification19WaitForNotificationEv(n);
  __tsan_acquire(const_cast<Notification*>(n));
}

bool __real__ZNK4absl7debian312Notification30WaitForNotificationWithTimeoutENS0_8DurationE(
    const Notification* n, Duration d);
bool __wrap__ZNK4absl7debian312Notification30WaitForNotificationWithTimeoutENS0_8DurationE(
    const Notification* n, Duration d) {
  bool r =
      __real__ZNK4absl7debian312Notification30WaitForNotificationWithTimeoutENS0_8DurationE(
          n, d);
  __tsan_acquire(const_cast<Notification*>(n));
  return r;
}

bool __real__ZNK4absl7debian312Notification31WaitForNotificationWithDeadlineENS0_4TimeE(
    const Notification* n, Time t);
bool __wrap__ZNK4absl7debian312Notification31WaitForNotificationWithDeadlineENS0_4TimeE(
    const Notification* n, Time t) {
  bool r =
      __real__ZNK4absl7debian312Notification31WaitForNotificationWithDeadlineENS0_4TimeE(
          n, t);
  __tsan_acquire(const_cast<Notification*>(n));
  return r;
}

}  // extern "C"
