// SPDX-License-Identifier: MIT
#include "gw/resolver.hpp"

#include <netdb.h>
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <system_error>
#include <thread>

#include "gw/errors.hpp"

namespace gw {
namespace {

// A worker that has had nothing to do for this long ends; the next lookup
// starts a new one. Lookups are rare (start, reload, refresh), threads are not free.
constexpr auto idle_exit = std::chrono::seconds(10);

Resolution from_addrinfo(int rc, addrinfo *found) {
  Resolution answer;
  if (rc != 0) {
    answer.error = rc == EAI_SYSTEM ? std::strerror(errno) : gai_strerror(rc);
    return answer;
  }
  for (addrinfo *ai = found; ai; ai = ai->ai_next) {
    if (ai->ai_addrlen > sizeof(sockaddr_storage)) continue;
    SocketAddress address;
    std::memcpy(&address.storage, ai->ai_addr, ai->ai_addrlen);
    address.length = ai->ai_addrlen;
    answer.addresses.push_back(address);
  }
  freeaddrinfo(found);
  if (answer.addresses.empty()) answer.error = "no usable address";
  return answer;
}

bool same(const std::vector<SocketAddress> &a, const std::vector<SocketAddress> &b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const SocketAddress &x, const SocketAddress &y) {
    return x.length == y.length && std::memcmp(&x.storage, &y.storage, x.length) == 0;
  });
}

}  // namespace

Resolution system_lookup(const std::string &host, uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  // No AI_ADDRCONFIG: it hides IPv4 loopback answers on a board whose only
  // configured address is 127.0.0.1, which is when local backends matter most.
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo *found = nullptr;
  std::string service = std::to_string(port);
  int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &found);
  return from_addrinfo(rc, found);
}

int numeric_address(const std::string &host, uint16_t port, SocketAddress &out) noexcept {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  addrinfo *found = nullptr;
  char service[8];
  std::snprintf(service, sizeof service, "%u", static_cast<unsigned>(port));
  if (host.empty() || getaddrinfo(host.c_str(), service, &hints, &found) != 0) return err::EADDRESS;
  int rc = err::EADDRESS;
  if (found->ai_addrlen <= sizeof out.storage) {
    out = SocketAddress{};
    std::memcpy(&out.storage, found->ai_addr, found->ai_addrlen);
    out.length = found->ai_addrlen;
    rc = 0;
  }
  freeaddrinfo(found);
  return rc;
}

std::string to_string(const std::vector<SocketAddress> &addresses) {
  std::string text;
  for (const SocketAddress &address : addresses) {
    if (!text.empty()) text += ", ";
    text += address.to_string();
  }
  return text;
}

// ---- Resolver ---------------------------------------------------------------

// One lookup. host and port are immutable; `cancelled` is read by workers;
// `done` is touched on the loop thread only (set, run, or cleared by cancel).
struct Resolver::Pending {
  std::string host;
  uint16_t port = 0;
  std::atomic<bool> cancelled{false};
  Callback done;
};

// What the workers share with the Resolver; it outlives both (shared_ptr).
struct Resolver::Core {
  std::mutex mutex;
  std::condition_variable wake;
  std::deque<std::shared_ptr<Pending>> queue;       // guarded by mutex
  std::vector<std::shared_ptr<Pending>> running;    // guarded by mutex
  EventLoop *loop = nullptr;                        // guarded by mutex; null once the Resolver is gone
  std::atomic<bool> gone{false};                    // the same, for answers already posted
  LookupFunction lookup;                            // immutable
  unsigned threads = 0, idle = 0, max_threads = 1;  // guarded by mutex
};

Resolver::Resolver(EventLoop &loop, LookupFunction lookup, unsigned max_threads)
    : loop_(loop), core_(std::make_shared<Core>()) {
  core_->loop = &loop;
  core_->lookup = std::move(lookup);
  core_->max_threads = max_threads ? max_threads : 1;
}

Resolver::~Resolver() {
  std::deque<std::shared_ptr<Pending>> dropped;
  {
    std::lock_guard<std::mutex> lock(core_->mutex);
    core_->loop = nullptr;
    core_->gone = true;
    dropped.swap(core_->queue);
    // Their callbacks belong to the loop thread: free them here, not on a worker.
    for (auto &pending : core_->running) {
      pending->cancelled = true;
      pending->done = nullptr;
    }
  }
  core_->wake.notify_all();
}

int Resolver::resolve(Lookup &out, std::string host, uint16_t port, Callback done) {
  auto pending = std::make_shared<Pending>();
  pending->host = std::move(host);
  pending->port = port;
  pending->done = std::move(done);
  std::unique_lock<std::mutex> lock(core_->mutex);
  core_->queue.push_back(pending);
  if (core_->idle >= core_->queue.size() || core_->threads >= core_->max_threads) {
    lock.unlock();
    core_->wake.notify_one();
  } else {
    // Workers take no signals (all blocked), so that signalfd-based handling
    // and the default actions stay with the threads that expect them.
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    try {
      std::thread(work, core_).detach();
      ++core_->threads;
    } catch (const std::system_error &error) {
      if (core_->threads == 0) {
        core_->queue.pop_back();
        pthread_sigmask(SIG_SETMASK, &previous, nullptr);
        return error.code().value() ? -error.code().value() : -EAGAIN;
      }
      // Others are running: one of them takes it.
    }
    pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  }
  out = Lookup(std::move(pending));
  return 0;
}

void Resolver::work(std::shared_ptr<Core> core) {
  std::unique_lock<std::mutex> lock(core->mutex);
  while (core->loop) {
    if (core->queue.empty()) {
      ++core->idle;
      bool woken = core->wake.wait_for(lock, idle_exit, [&] { return !core->queue.empty() || !core->loop; });
      --core->idle;
      if (!woken) break;
      continue;
    }
    std::shared_ptr<Pending> pending = std::move(core->queue.front());
    core->queue.pop_front();
    if (pending->cancelled) continue;
    core->running.push_back(pending);
    lock.unlock();
    Resolution answer;
    try {
      answer = core->lookup(pending->host, pending->port);
    } catch (const std::exception &error) {
      answer = Resolution{{}, error.what()};
    }
    lock.lock();
    core->running.erase(std::find(core->running.begin(), core->running.end(), pending));
    if (!core->loop || pending->cancelled) continue;
    try {
      core->loop->post([core, pending, answer = std::move(answer)]() mutable {
        if (core->gone || pending->cancelled || !pending->done) return;
        Callback done = std::move(pending->done);
        pending->done = nullptr;
        done(std::move(answer));
      });
    } catch (const std::bad_alloc &) {
      // The answer is lost; its owner's timeout or retry takes over.
    }
  }
  --core->threads;
}

Resolver::Lookup &Resolver::Lookup::operator=(Lookup &&other) noexcept {
  if (this != &other) {
    cancel();
    pending_ = std::move(other.pending_);
  }
  return *this;
}

void Resolver::Lookup::cancel() noexcept {
  if (!pending_) return;
  pending_->cancelled = true;
  pending_->done = nullptr;
  pending_.reset();
}

bool Resolver::Lookup::active() const noexcept { return pending_ && !pending_->cancelled && pending_->done; }

// ---- ResolvedName -------------------------------------------------------------

ResolvedName::ResolvedName(std::shared_ptr<Resolver> resolver, std::string host, uint16_t port, std::string context,
                           const Logger &logger, Options options)
    : resolver_(std::move(resolver)),
      host_(std::move(host)),
      port_(port),
      context_(std::move(context)),
      logger_(logger),
      options_(options),
      timer_(resolver_->loop(), [this] { lookup(); }) {}

void ResolvedName::start() {
  if (started_) return;
  started_ = true;
  lookup();
}

void ResolvedName::refresh_soon() {
  if (!started_ || lookup_.active()) return;
  if (EventLoop::now_ms() - last_answer_ms_ < options_.retry_min_ms) return;  // a retry or refresh is scheduled
  lookup();
}

void ResolvedName::lookup() {
  timer_.stop();
  if (lookup_.active()) return;
  int rc = resolver_->resolve(lookup_, host_, port_, [this](Resolution answer) { on_answer(std::move(answer)); });
  if (rc != 0) on_answer(Resolution{{}, std::string("cannot start a resolver thread: ") + std::strerror(-rc)});
}

void ResolvedName::on_answer(Resolution answer) {
  last_answer_ms_ = EventLoop::now_ms();
  State before = state_;
  if (answer.addresses.empty()) {
    error_ = answer.error.empty() ? "no address" : answer.error;
    retry_ms_ = retry_ms_ ? std::min(retry_ms_ * 2, options_.retry_max_ms) : options_.retry_min_ms;
    if (state_ == State::resolved) {
      logger_.log(LogLevel::warning, "%s: cannot resolve %s again: %s; keeping %s; retrying in %llu ms",
                  context_.c_str(), host_.c_str(), error_.c_str(), to_string(*addresses_).c_str(),
                  static_cast<unsigned long long>(retry_ms_));
    } else {
      state_ = State::failed;
      logger_.log(LogLevel::warning,
                  "%s: cannot resolve %s: %s; its clients are closed until it resolves; retrying in %llu ms",
                  context_.c_str(), host_.c_str(), error_.c_str(), static_cast<unsigned long long>(retry_ms_));
    }
    timer_.start(retry_ms_);
    if (state_ != before && on_change_) on_change_();
    return;
  }
  retry_ms_ = 0;
  error_.clear();
  bool changed = state_ != State::resolved || !same(*addresses_, answer.addresses);
  state_ = State::resolved;
  if (changed) {
    addresses_ = std::make_shared<const std::vector<SocketAddress>>(std::move(answer.addresses));
    logger_.log(LogLevel::info, "%s: %s resolved to %s", context_.c_str(), host_.c_str(),
                to_string(*addresses_).c_str());
  }
  if (options_.refresh_ms) timer_.start(options_.refresh_ms);
  if (changed && on_change_) on_change_();
}

}  // namespace gw
