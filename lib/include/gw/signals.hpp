// SPDX-License-Identifier: MIT
// SignalWatcher: Unix signals delivered as loop events (signalfd).
#pragma once
#include <functional>
#include <initializer_list>
#include <memory>

#include "gw/event_loop.hpp"
#include "gw/fd.hpp"

namespace gw {

/// Blocks the given signals in the calling thread (create it before starting
/// other threads, so they inherit the mask) and reports each one to
/// `on_signal` on the loop thread. Owns its signalfd. Loop thread only.
class SignalWatcher final : IoHandler {
 public:
  static int create(std::unique_ptr<SignalWatcher> &out, EventLoop &loop, std::initializer_list<int> signals,
                    std::function<void(int)> on_signal);
  ~SignalWatcher();

 private:
  SignalWatcher(EventLoop &loop, std::function<void(int)> on_signal) : loop_(loop), on_signal_(std::move(on_signal)) {}
  void on_io(uint32_t events) override;
  EventLoop &loop_;
  Fd fd_;
  std::function<void(int)> on_signal_;
};

}  // namespace gw
