// SPDX-License-Identifier: MIT
// Stats: counters that any thread may read while the loop thread updates them.
#pragma once
#include <atomic>
#include <cstdint>

namespace gw {

/// Written only by the loop thread, read by any thread (relaxed atomics: each
/// field is exact, but fields are not a consistent snapshot of one instant).
struct Stats {
  std::atomic<uint64_t> clients{0};
  std::atomic<uint64_t> accepted{0};
  std::atomic<uint64_t> refused{0};
  std::atomic<uint64_t> bytes_in{0};
  std::atomic<uint64_t> bytes_out{0};
  std::atomic<uint64_t> bytes_spliced{0};  ///< forwarded inside the kernel (splice), both directions

  static void add(std::atomic<uint64_t> &counter, uint64_t amount) noexcept {
    counter.store(counter.load(std::memory_order_relaxed) + amount, std::memory_order_relaxed);
  }
};

}  // namespace gw
