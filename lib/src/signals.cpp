// SPDX-License-Identifier: MIT
#include "gw/signals.hpp"

#include <signal.h>
#include <sys/signalfd.h>

#include <cerrno>

namespace gw {

int SignalWatcher::create(std::unique_ptr<SignalWatcher> &out, EventLoop &loop, std::initializer_list<int> signals,
                          std::function<void(int)> on_signal) {
  sigset_t mask;
  sigemptyset(&mask);
  for (int signal : signals) sigaddset(&mask, signal);
  // Blocked, the signals wait in the signalfd instead of interrupting
  // whatever the loop is doing.
  if (int rc = pthread_sigmask(SIG_BLOCK, &mask, nullptr)) return -rc;
  std::unique_ptr<SignalWatcher> watcher(new SignalWatcher(loop, std::move(on_signal)));
  watcher->fd_.reset(signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!watcher->fd_) return -errno;
  if (int rc = loop.add(watcher->fd_.get(), EPOLLIN, watcher.get())) return rc;
  out = std::move(watcher);
  return 0;
}

SignalWatcher::~SignalWatcher() {
  if (fd_) loop_.remove(fd_.get());
}

void SignalWatcher::on_io(uint32_t) {
  signalfd_siginfo info;
  while (::read(fd_.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
    on_signal_(static_cast<int>(info.ssi_signo));
  }
}

}  // namespace gw
