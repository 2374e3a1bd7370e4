// SPDX-License-Identifier: MIT
#include "gw/event_loop.hpp"

#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

namespace gw {

uint64_t EventLoop::now_ms() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000u + static_cast<uint64_t>(ts.tv_nsec) / 1000000u;
}

void EventLoop::abort_off_loop_thread(const char *where) noexcept {
  // A threading bug is not recoverable: report it where it happened.
  std::fprintf(stderr, "gateway: %s called off the loop thread (it is loop-thread only)\n", where);
  std::abort();
}

int EventLoop::create(std::unique_ptr<EventLoop> &out) {
  std::unique_ptr<EventLoop> loop(new EventLoop());
  loop->epoll_.reset(epoll_create1(EPOLL_CLOEXEC));
  if (!loop->epoll_) return -errno;
  loop->wake_.reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!loop->wake_) return -errno;
  if (int rc = loop->timers_.open()) return rc;
  loop->wake_handler_.loop = loop->timer_handler_.loop = loop.get();
  loop->wake_handler_.action = &EventLoop::run_posted;
  loop->timer_handler_.action = &EventLoop::run_due_timers;
  if (int rc = loop->add(loop->wake_.get(), EPOLLIN, &loop->wake_handler_)) return rc;
  if (int rc = loop->add(loop->timers_.fd(), EPOLLIN, &loop->timer_handler_)) return rc;
  loop->scratch_.emplace_back(new uint8_t[scratch_size]);
  out = std::move(loop);
  return 0;
}

EventLoop::~EventLoop() { run_deferred(); }

int EventLoop::add(int fd, uint32_t events, IoHandler *handler) noexcept {
  assert_in_loop_thread("EventLoop::add");
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = handler;
  return epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : -errno;
}

int EventLoop::modify(int fd, uint32_t events, IoHandler *handler) noexcept {
  assert_in_loop_thread("EventLoop::modify");
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = handler;
  return epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev) == 0 ? 0 : -errno;
}

void EventLoop::remove(int fd) noexcept {
  assert_in_loop_thread("EventLoop::remove");
  epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

int EventLoop::dispatch(int timeout_ms) {
  assert_in_loop_thread("EventLoop::dispatch");
  epoll_event events[64];
  int count = epoll_wait(epoll_.get(), events, 64, timeout_ms);
  if (count < 0) {
    if (errno != EINTR) return -errno;
    count = 0;
  }
  // The depth is restored also when a handler throws (the C facade turns the
  // exception into an error code and the loop stays usable).
  struct Depth {
    int &depth;
    explicit Depth(int &d) noexcept : depth(d) { ++depth; }
    ~Depth() { --depth; }
  } depth(dispatch_depth_);
  if (scratch_.size() < static_cast<size_t>(dispatch_depth_)) scratch_.emplace_back(new uint8_t[scratch_size]);
  for (int i = 0; i < count; ++i) static_cast<IoHandler *>(events[i].data.ptr)->on_io(events[i].events);
  // A nested dispatch must not free what its outer batches may still touch:
  // the outer frame's events[] and the handler running on the stack below us
  // can point to connections this batch closed. The outermost frame frees.
  if (dispatch_depth_ == 1) run_deferred();
  return count;
}

void EventLoop::run_deferred() {
  assert_in_loop_thread("EventLoop::run_deferred");
  // Deferred work may defer more (a close inside a close callback): drain until quiet.
  while (!deferred_.empty()) {
    std::vector<std::function<void()>> batch;
    batch.swap(deferred_);
    for (auto &fn : batch) fn();
  }
}

bool EventLoop::post(std::function<void()> fn) {
  // The wake-up is written inside the critical section: the loop thread can
  // take the function only after we unlock, so once it has run (for Server's
  // begin_stop: once the server may have stopped and been destroyed) this
  // thread touches nothing of the loop any more. Waking after the unlock
  // wrote to an eventfd that the loop thread may already have closed, and
  // whose number another file may have reused.
  std::lock_guard<std::mutex> lock(posted_mutex_);
  if (posts_closed_) return false;
  posted_.push_back(std::move(fn));
  wake();
  return true;
}

void EventLoop::close_posts() noexcept {
  std::lock_guard<std::mutex> lock(posted_mutex_);
  posts_closed_ = true;
}

void EventLoop::drain_posted() {
  assert_in_loop_thread("EventLoop::drain_posted");
  while (take_posted_batch()) run_posted_batch();
}

bool EventLoop::take_posted_batch() {
  if (running_next_ < running_.size()) return true;  // an earlier batch is not finished
  running_.clear();
  running_next_ = 0;
  std::lock_guard<std::mutex> lock(posted_mutex_);
  running_.swap(posted_);  // both keep their capacity: no allocation here
  return !running_.empty();
}

void EventLoop::run_posted_batch() {
  // The index moves past a function before it runs: if it throws, or calls
  // dispatch() (which continues this same batch), nothing runs twice and
  // nothing is skipped, and the order of posts is kept.
  while (running_next_ < running_.size()) {
    std::function<void()> fn = std::move(running_[running_next_++]);
    fn();
  }
}

void EventLoop::wake() noexcept {
  uint64_t one = 1;
  // EAGAIN means the counter is already non-zero: the loop will wake anyway.
  [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof one);
}

void EventLoop::defer(std::function<void()> fn) {
  assert_in_loop_thread("EventLoop::defer");
  deferred_.push_back(std::move(fn));
}

void EventLoop::run_posted() {
  uint64_t count;
  [[maybe_unused]] ssize_t n = ::read(wake_.get(), &count, sizeof count);
  // One batch per wake-up: what is posted meanwhile wakes the loop again, so
  // posting threads cannot keep the loop from its I/O.
  if (take_posted_batch()) run_posted_batch();
}

void EventLoop::run_due_timers() { timers_.run_due(); }

// ---- timers: a binary min-heap of entries, each knowing its index --------

TimerQueue::~TimerQueue() {
  for (Entry *entry : heap_) entry->index = npos;
}

int TimerQueue::open() noexcept {
  timerfd_.reset(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  return timerfd_ ? 0 : -errno;
}

bool TimerQueue::earlier(const Entry *a, const Entry *b) noexcept {
  return a->deadline_ms != b->deadline_ms ? a->deadline_ms < b->deadline_ms : a->sequence < b->sequence;
}

void TimerQueue::heap_swap(size_t a, size_t b) noexcept {
  std::swap(heap_[a], heap_[b]);
  heap_[a]->index = a;
  heap_[b]->index = b;
}

void TimerQueue::heap_up(size_t index) noexcept {
  while (index > 0) {
    size_t parent = (index - 1) / 2;
    if (!earlier(heap_[index], heap_[parent])) break;
    heap_swap(index, parent);
    index = parent;
  }
}

void TimerQueue::heap_down(size_t index) noexcept {
  for (;;) {
    size_t smallest = index, left = 2 * index + 1, right = left + 1;
    if (left < heap_.size() && earlier(heap_[left], heap_[smallest])) smallest = left;
    if (right < heap_.size() && earlier(heap_[right], heap_[smallest])) smallest = right;
    if (smallest == index) return;
    heap_swap(index, smallest);
    index = smallest;
  }
}

void TimerQueue::schedule(Entry &entry, uint64_t delay_ms, uint64_t repeat_ms) {
  entry.deadline_ms = EventLoop::now_ms() + delay_ms;
  entry.repeat_ms = repeat_ms;
  push(entry);
}

void TimerQueue::push(Entry &entry) {
  entry.sequence = ++sequence_;
  entry.index = heap_.size();
  heap_.push_back(&entry);
  heap_up(entry.index);
  if (heap_.front() == &entry) arm_timerfd();
}

void TimerQueue::cancel(Entry &entry) noexcept {
  size_t index = entry.index;
  if (index == npos) return;
  bool was_first = index == 0;
  heap_swap(index, heap_.size() - 1);
  heap_.pop_back();
  entry.index = npos;
  if (index < heap_.size()) {
    heap_up(index);
    heap_down(index);
  }
  if (was_first) arm_timerfd();
}

void TimerQueue::arm_timerfd() noexcept {
  uint64_t deadline = heap_.empty() ? 0 : heap_.front()->deadline_ms;
  if (deadline == armed_deadline_) return;
  armed_deadline_ = deadline;
  itimerspec spec{};
  if (deadline) {
    // An absolute deadline of 0 would disarm the timerfd: a due timer fires at 1 ns.
    spec.it_value.tv_sec = static_cast<time_t>(deadline / 1000);
    spec.it_value.tv_nsec = static_cast<long>((deadline % 1000) * 1000000);
    if (spec.it_value.tv_sec == 0 && spec.it_value.tv_nsec == 0) spec.it_value.tv_nsec = 1;
  }
  timerfd_settime(timerfd_.get(), TFD_TIMER_ABSTIME, &spec, nullptr);
}

void TimerQueue::run_due() {
  uint64_t expirations;
  [[maybe_unused]] ssize_t n = ::read(timerfd_.get(), &expirations, sizeof expirations);
  armed_deadline_ = 0;  // the timerfd has fired: it is disarmed until re-armed
  uint64_t now = EventLoop::now_ms();
  // Entries started by callbacks during this pass get a later sequence and, if
  // already due, run on the next pass: a periodic 0 ms timer cannot starve I/O.
  uint64_t last_sequence = sequence_;
  while (!heap_.empty() && heap_.front()->deadline_ms <= now && heap_.front()->sequence <= last_sequence) {
    Entry *entry = heap_.front();
    cancel(*entry);
    if (entry->repeat_ms) {
      entry->deadline_ms += entry->repeat_ms;
      if (entry->deadline_ms <= now) entry->deadline_ms = now + entry->repeat_ms;  // we fell behind: skip, do not burst
      push(*entry);
    }
    entry->callback();  // may stop, restart or defer-destroy this entry's timer
  }
  arm_timerfd();
}

Timer::Timer(EventLoop &loop, std::function<void()> callback) : loop_(loop) { entry_.callback = std::move(callback); }

Timer::~Timer() { loop_.timers().cancel(entry_); }

void Timer::start(uint64_t delay_ms, uint64_t repeat_ms) {
  loop_.assert_in_loop_thread("Timer::start");
  TimerQueue &timers = loop_.timers();
  timers.cancel(entry_);
  timers.schedule(entry_, delay_ms, repeat_ms);
}

void Timer::stop() noexcept {
  loop_.assert_in_loop_thread("Timer::stop");
  loop_.timers().cancel(entry_);
}

}  // namespace gw
