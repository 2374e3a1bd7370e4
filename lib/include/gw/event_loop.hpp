// SPDX-License-Identifier: MIT
// EventLoop: one thread's epoll loop, its timers and its cross-thread queue.
#pragma once
#include <sys/epoll.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "gw/fd.hpp"

namespace gw {

class EventLoop;

/// Something that wants readiness events for one fd. The loop does not own
/// handlers: an owner that removes its fd during a batch must keep the handler
/// alive until the batch ends (see EventLoop::defer) and ignore late events.
class IoHandler {
 public:
  virtual void on_io(uint32_t events) = 0;

 protected:
  ~IoHandler() = default;
};

/// The loop's timers: a binary min-heap of entries behind one timerfd, armed
/// for the earliest deadline. Owned by the EventLoop (see EventLoop::timers());
/// Timer is its user. It does not own the entries: each lives in its Timer,
/// which cancels it before it goes away. Loop thread only (Timer checks).
class TimerQueue {
 public:
  static constexpr size_t npos = static_cast<size_t>(-1);

  /// One timer's place in the queue, embedded in its Timer. The Timer owns
  /// the storage and sets the callback; every other field is the queue's.
  struct Entry {
    std::function<void()> callback;
    uint64_t deadline_ms = 0;
    uint64_t repeat_ms = 0;
    uint64_t sequence = 0;  // breaks deadline ties in start order
    size_t index = npos;    // in the heap, or npos when not scheduled
    bool scheduled() const noexcept { return index != npos; }
  };

  TimerQueue() = default;
  /// Leaves every entry still queued unscheduled (its Timer may outlive the loop).
  ~TimerQueue();
  TimerQueue(const TimerQueue &) = delete;
  TimerQueue &operator=(const TimerQueue &) = delete;

  /// Creates the timerfd. Returns 0 or a negated errno.
  int open() noexcept;
  /// The timerfd: readable once the earliest entry is due (the loop watches it).
  int fd() const noexcept { return timerfd_.get(); }

  /// Queues `entry` (not scheduled now) to run after delay_ms, then every
  /// repeat_ms (0: once).
  void schedule(Entry &entry, uint64_t delay_ms, uint64_t repeat_ms);
  /// Takes `entry` out of the queue; nothing when it is not scheduled.
  void cancel(Entry &entry) noexcept;
  /// Runs the entries that are due (the timerfd was readable).
  void run_due();

 private:
  void push(Entry &entry);
  void arm_timerfd() noexcept;
  void heap_swap(size_t a, size_t b) noexcept;
  void heap_up(size_t index) noexcept;
  void heap_down(size_t index) noexcept;
  static bool earlier(const Entry *a, const Entry *b) noexcept;

  Fd timerfd_;
  std::vector<Entry *> heap_;
  uint64_t sequence_ = 0;
  uint64_t armed_deadline_ = 0;
};

/// A one-shot or periodic timer: a handle on one TimerQueue::Entry of its
/// loop. Owned by whoever created it; destroying it stops it. Loop thread only
/// (start and stop check it). The callback may start, stop or (through
/// EventLoop::defer) destroy its own timer.
class Timer {
 public:
  Timer(EventLoop &loop, std::function<void()> callback);
  /// Unchecked: owners tear down on the thread that joined the loop thread
  /// (a server run on a thread of its own and destroyed by its creator).
  ~Timer();
  Timer(const Timer &) = delete;
  Timer &operator=(const Timer &) = delete;

  /// First after delay_ms, then every repeat_ms (0: once). Restarts if active.
  void start(uint64_t delay_ms, uint64_t repeat_ms = 0);
  void stop() noexcept;
  bool active() const noexcept { return entry_.scheduled(); }

 private:
  EventLoop &loop_;
  TimerQueue::Entry entry_;
};

/// A level-triggered epoll loop. The epoll fd itself is the loop's pollable
/// fd: a wake-up eventfd and a timerfd armed for the earliest timer live inside
/// it, so a foreign poll loop only needs to watch poll_fd().
///
/// Threading: post() and wake() are thread-safe; everything else must run on
/// the loop thread (the thread that created the loop, until bind_to_current_thread()).
///
/// Nesting: a handler may call dispatch() again (the C API allows a callback
/// to call gw_server_dispatch()). Deferred work then runs only when the
/// outermost dispatch ends its batch, because the outer batch may still hold
/// pointers to the objects that an inner batch closed.
class EventLoop {
 public:
  /// Creates the epoll fd, eventfd and timerfd. Returns 0 or a negated errno.
  static int create(std::unique_ptr<EventLoop> &out);
  ~EventLoop();

  /// Watching fds (epoll_ctl). Loop thread only.
  int add(int fd, uint32_t events, IoHandler *handler) noexcept;
  int modify(int fd, uint32_t events, IoHandler *handler) noexcept;
  void remove(int fd) noexcept;

  /// Waits up to timeout_ms (-1: forever, 0: not at all) for events, handles
  /// them, runs due timers, posted functions and (outermost dispatch only)
  /// deferred work. Returns the number of events handled or a negated errno.
  int dispatch(int timeout_ms);

  /// Queues fn to run on the loop thread during a later dispatch, or in
  /// drain_posted(). Thread-safe. Returns true when fn was queued: it then
  /// runs exactly once, provided the owner drains after close_posts() (the
  /// Server does). Returns false, with fn destroyed unrun, once close_posts()
  /// was called. Throws std::bad_alloc (fn not queued) when out of memory.
  bool post(std::function<void()> fn);
  /// From now on post() refuses. Thread-safe and idempotent: the acceptance
  /// test and the queueing share one mutex with this, so every post either
  /// was queued before the close or is refused; none falls in between.
  void close_posts() noexcept;
  /// Runs every queued post, including those queued by the functions it
  /// runs, until the queue is empty. Loop thread only. After close_posts()
  /// this leaves nothing behind for good.
  void drain_posted();
  /// Makes a blocked dispatch return soon. Thread-safe, async-signal-safe.
  void wake() noexcept;
  /// Runs fn at the end of the current dispatch, after every handler of the
  /// batch: the place to free objects that a handler closed. Loop thread only.
  void defer(std::function<void()> fn);
  /// Runs what defer() queued (dispatch does this after every batch; owners
  /// call it once more while tearing down outside a dispatch).
  void run_deferred();

  /// The timers of this loop (Timer's seam). Loop thread only.
  TimerQueue &timers() noexcept { return timers_; }

  int poll_fd() const noexcept { return epoll_.get(); }
  bool in_loop_thread() const noexcept { return owner_.load(std::memory_order_relaxed) == std::this_thread::get_id(); }
  /// The loop-thread-only entry points of the core call this first, as
  /// muduo's assertInLoopThread() does: with GW_CHECK_THREADS (debug and
  /// sanitizer builds) a call from another thread aborts with `where` named;
  /// otherwise it compiles to nothing. The C API checks the thread itself
  /// and returns GW_EWRONGTHREAD before it reaches the core.
  void assert_in_loop_thread(const char *where) const noexcept {
#if GW_CHECK_THREADS
    if (!in_loop_thread()) abort_off_loop_thread(where);
#else
    (void)where;
#endif
  }
  void bind_to_current_thread() noexcept { owner_.store(std::this_thread::get_id(), std::memory_order_relaxed); }

  /// Monotonic milliseconds.
  static uint64_t now_ms() noexcept;

  /// A read buffer of the current dispatch() frame: connections read into it,
  /// and copy only the unparsed remainder into a buffer of their own. Each
  /// nesting level has its own, so that a callback that dispatches again (the
  /// C API allows it) cannot overwrite the bytes its caller is still parsing.
  uint8_t *scratch() noexcept { return scratch_[dispatch_depth_ > 0 ? dispatch_depth_ - 1 : 0].get(); }
  static constexpr size_t scratch_size = 64 * 1024;

 private:
  EventLoop() = default;
  [[noreturn]] static void abort_off_loop_thread(const char *where) noexcept;
  void run_due_timers();
  void run_posted();
  bool take_posted_batch();
  void run_posted_batch();

  struct FdHandler final : IoHandler {
    void (EventLoop::*action)() = nullptr;
    EventLoop *loop = nullptr;
    void on_io(uint32_t) override { (loop->*action)(); }
  };

  Fd epoll_, wake_;
  FdHandler wake_handler_, timer_handler_;
  std::atomic<std::thread::id> owner_{std::this_thread::get_id()};
  std::mutex posted_mutex_;
  std::vector<std::function<void()>> posted_;  // guarded by posted_mutex_
  bool posts_closed_ = false;                  // guarded by posted_mutex_
  // The batch of posts being run (loop thread only): running_[running_next_]
  // runs next. Kept as a member so that a throwing or nested run resumes it.
  std::vector<std::function<void()>> running_;
  size_t running_next_ = 0;
  int dispatch_depth_ = 0;  // dispatch() frames on the loop thread's stack
  std::vector<std::function<void()>> deferred_;
  TimerQueue timers_;
  std::vector<std::unique_ptr<uint8_t[]>> scratch_;  // one per nesting level in use so far
};

}  // namespace gw
