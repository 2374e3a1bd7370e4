// SPDX-License-Identifier: MIT
// Shared by the core suites (C++ cmocka against lib/ directly): small client
// helpers for loopback tests. Header-only; include after <cmocka.h>.
#pragma once
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <vector>

namespace gwc {

/// A blocking client socket connected to 127.0.0.1:port; fails the test if
/// the connect does. The caller owns the fd.
inline int connect_to(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(fd, reinterpret_cast<sockaddr *>(&address), sizeof address), 0);
  return fd;
}

/// A socket listening on 127.0.0.1 at a port the kernel picks, with `flags`
/// added to its type (SOCK_NONBLOCK, say); *port gets the port. Fails the test
/// if the bind or listen does. The caller owns the fd.
inline int listen_loopback(int backlog, int flags, int *port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | flags, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, reinterpret_cast<sockaddr *>(&address), sizeof address), 0);
  assert_int_equal(listen(fd, backlog), 0);
  socklen_t length = sizeof address;
  assert_int_equal(getsockname(fd, reinterpret_cast<sockaddr *>(&address), &length), 0);
  *port = ntohs(address.sin_port);
  return fd;
}

/// While it lives, the calling thread, and every thread it starts, is over
/// its user's pipe quota (fs.pipe-user-pages-soft), as an unprivileged
/// daemon is once its pipes hold that many pages: new pipes come with two
/// pages (8 KiB) and F_SETPIPE_SZ fails with EPERM. It drops CAP_SYS_ADMIN
/// and CAP_SYS_RESOURCE from the thread's effective set (root is exempt
/// from the quota otherwise; both stay permitted, so the destructor takes
/// them back), then holds default-sized pipes until a new one comes out
/// smaller. Fails the test when the quota is off (0) or the fd limit cannot
/// hold enough pipes. Not thread-safe; one at a time. A failed assertion
/// longjmps past the destructor: a suite runs such a test last.
class PipeQuotaSpent {
 public:
  PipeQuotaSpent() {
    header_.version = _LINUX_CAPABILITY_VERSION_3;
    header_.pid = 0;
    assert_int_equal(syscall(SYS_capget, &header_, saved_), 0);
    __user_cap_data_struct dropped[2] = {saved_[0], saved_[1]};
    dropped[0].effective &= ~((1u << CAP_SYS_ADMIN) | (1u << CAP_SYS_RESOURCE));
    assert_int_equal(syscall(SYS_capset, &header_, dropped), 0);
    raise_fd_limit();
    for (int i = 0; i < 8192; ++i) {
      int fds[2];
      if (pipe2(fds, O_CLOEXEC) != 0) fail_msg("pipe2 failed after %zu pipes (the fd limit?)", held_.size() / 2);
      held_.push_back(fds[0]);
      held_.push_back(fds[1]);
      if (fcntl(fds[1], F_GETPIPE_SZ) < 64 * 1024) return;
    }
    fail_msg("8192 pipes of 64 KiB and still under fs.pipe-user-pages-soft (is the quota off?)");
  }
  ~PipeQuotaSpent() {
    for (int fd : held_) close(fd);
    syscall(SYS_capset, &header_, saved_);
  }
  PipeQuotaSpent(const PipeQuotaSpent &) = delete;
  PipeQuotaSpent &operator=(const PipeQuotaSpent &) = delete;

 private:
  // 64 MiB of default pipes (the quota's default) are 2048 fds.
  static void raise_fd_limit() {
    rlimit limit{};
    getrlimit(RLIMIT_NOFILE, &limit);
    rlim_t want = 20000;
    if (limit.rlim_cur >= want) return;
    limit.rlim_cur = limit.rlim_max < want ? limit.rlim_max : want;
    setrlimit(RLIMIT_NOFILE, &limit);
  }

  __user_cap_header_struct header_{};
  __user_cap_data_struct saved_[2]{};
  std::vector<int> held_;
};

}  // namespace gwc
