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

/// One Stats block that rolls every change up to its parent's (a listener's
/// counters to its server's), so that each event is counted in one place.
/// Written on the loop thread only; stats() may be read from any thread.
/// The parent, when set, must outlive this object.
class Counters {
 public:
  using Field = std::atomic<uint64_t> Stats::*;

  explicit Counters(Counters *parent = nullptr) noexcept : parent_(parent) {}
  Counters(const Counters &) = delete;
  Counters &operator=(const Counters &) = delete;

  const Stats &stats() const noexcept { return stats_; }

  /// Adds `amount` to `field` here and in every ancestor.
  void add(Field field, uint64_t amount = 1) noexcept {
    for (Counters *level = this; level; level = level->parent_) Stats::add(level->stats_.*field, amount);
  }
  /// Takes `amount` off `field` here and in every ancestor (a client gone).
  void subtract(Field field, uint64_t amount = 1) noexcept { add(field, static_cast<uint64_t>(0) - amount); }

 private:
  Stats stats_;
  Counters *parent_;
};

}  // namespace gw
