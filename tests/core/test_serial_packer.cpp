// SPDX-License-Identifier: MIT
// SerialPacker on its own, with a real EventLoop for its timers: the default
// passes each read through at once; delimiters (one or two bytes, split over
// reads, kept or stripped), max_packet, the idle gap and max_hold cut
// packets as configured; the gap's millisecond rounding never shortens it.
#include <chrono>
#include <string>
#include <vector>

extern "C" {
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
}

#include "serial_packer.hpp"

namespace {

using Clock = std::chrono::steady_clock;

long long ms_since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

// A packer whose packets land in `packets`, with their emission times.
struct Harness {
  std::unique_ptr<gw::EventLoop> loop;
  std::vector<std::string> packets;
  std::vector<Clock::time_point> times;
  std::unique_ptr<gw::SerialPacker> packer;

  explicit Harness(const gw::SerialPacking &packing, uint32_t gap_us = 0, size_t cap = 65536) {
    assert_int_equal(gw::EventLoop::create(loop), 0);
    packer =
        std::make_unique<gw::SerialPacker>(*loop, packing, gap_us, cap, [this](const uint8_t *data, size_t length) {
          packets.emplace_back(reinterpret_cast<const char *>(data), length);
          times.push_back(Clock::now());
        });
  }
  ~Harness() { packer.reset(); }
  void feed(const std::string &bytes) { packer->feed(reinterpret_cast<const uint8_t *>(bytes.data()), bytes.size()); }
  // Runs the loop until `count` packets came or the deadline.
  void wait_for(size_t count, int timeout_ms = 5000) {
    const auto start = Clock::now();
    while (packets.size() < count) {
      if (ms_since(start) > timeout_ms) fail_msg("%zu of %zu packets within %d ms", packets.size(), count, timeout_ms);
      loop->dispatch(5);
    }
  }
};

// The packets so far are exactly `expected`.
void expect(const Harness &h, const std::vector<std::string> &expected) {
  if (h.packets == expected) return;
  std::string got;
  for (const auto &packet : h.packets) got += "[" + packet + "]";
  fail_msg("packets %s", got.c_str());
}

void default_passes_each_read_at_once(void **) {
  Harness h(gw::SerialPacking{});
  assert_true(h.packer->passthrough());
  h.feed("abc");
  h.feed("de");
  expect(h, {"abc", "de"});  // no loop turn needed: nothing is held
  assert_int_equal(h.packer->held(), 0);
}

void default_still_respects_the_cap(void **) {
  Harness h(gw::SerialPacking{}, 0, 4);
  h.feed("abcdefghij");
  expect(h, {"abcd", "efgh", "ij"});
}

void one_byte_delimiter_kept_and_stripped(void **) {
  gw::SerialPacking packing;
  packing.delimiter = "\n";
  Harness kept(packing);
  kept.feed("one\ntw");
  kept.feed("o\nthree");
  expect(kept, {"one\n", "two\n"});
  assert_int_equal(kept.packer->held(), 5);  // "three" waits for its delimiter
  packing.keep_delimiter = false;
  Harness stripped(packing);
  stripped.feed("one\ntwo\n\n");
  expect(stripped, {"one", "two", ""});  // an empty line stays a packet
}

void two_byte_delimiter_split_over_reads(void **) {
  gw::SerialPacking packing;
  packing.delimiter = "\r\n";
  packing.keep_delimiter = false;
  Harness h(packing);
  h.feed("ab\rc\r");  // a lone '\r' is data
  expect(h, {});
  h.feed("\nde\r\n");
  expect(h, {"ab\rc", "de"});
}

void max_packet_cuts_by_length(void **) {
  gw::SerialPacking packing;
  packing.max_packet = 4;
  Harness h(packing);
  h.feed("abcdef");
  h.feed("gh");
  expect(h, {"abcd", "efgh"});
}

void idle_gap_joins_reads_and_waits_at_least_the_gap(void **) {
  gw::SerialPacking packing;
  Harness h(packing, 30000);  // 30 ms
  const auto first = Clock::now();
  h.feed("ab");
  h.loop->dispatch(0);
  h.feed("cd");
  const auto last = Clock::now();
  assert_int_equal(h.packets.size(), 0);
  h.wait_for(1);
  assert_string_equal(h.packets[0].c_str(), "abcd");
  const auto quiet = std::chrono::duration_cast<std::chrono::microseconds>(h.times[0] - last).count();
  if (quiet < 30000) fail_msg("sent after %lld us of quiet, gap is 30000 us", static_cast<long long>(quiet));
  (void)first;
  assert_int_equal(gw::SerialPacker::gap_delay_ms(1), 2);
  assert_int_equal(gw::SerialPacker::gap_delay_ms(1000), 2);
  assert_int_equal(gw::SerialPacker::gap_delay_ms(1001), 3);
  assert_int_equal(gw::SerialPacker::gap_delay_ms(0), 0);
}

void max_hold_forces_out_a_packet_that_keeps_growing(void **) {
  gw::SerialPacking packing;
  packing.delimiter = "\n";  // never comes
  packing.max_hold_ms = 40;
  Harness h(packing);
  const auto start = Clock::now();
  while (h.packets.empty()) {
    if (ms_since(start) > 5000) fail_msg("max_hold never forced the packet out");
    h.feed("x");
    h.loop->dispatch(2);
  }
  const long long held = std::chrono::duration_cast<std::chrono::milliseconds>(h.times[0] - start).count();
  // The loop's clock counts whole milliseconds: a hold may end up to 1 ms
  // early, never later than asked on an idle machine.
  if (held < 39) fail_msg("forced out after %lld ms, max_hold is 40 ms", held);
  assert_true(h.packets[0].size() > 1);  // the bytes that came meanwhile went with it
}

void flush_and_discard(void **) {
  gw::SerialPacking packing;
  packing.delimiter = ";";
  Harness h(packing);
  h.feed("abc");
  h.packer->flush();
  assert_int_equal(h.packets.size(), 1);
  assert_string_equal(h.packets[0].c_str(), "abc");
  h.feed("def");
  h.packer->discard();
  assert_int_equal(h.packer->held(), 0);
  h.feed(";");
  assert_string_equal(h.packets[1].c_str(), ";");
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(default_passes_each_read_at_once),
      cmocka_unit_test(default_still_respects_the_cap),
      cmocka_unit_test(one_byte_delimiter_kept_and_stripped),
      cmocka_unit_test(two_byte_delimiter_split_over_reads),
      cmocka_unit_test(max_packet_cuts_by_length),
      cmocka_unit_test(idle_gap_joins_reads_and_waits_at_least_the_gap),
      cmocka_unit_test(max_hold_forces_out_a_packet_that_keeps_growing),
      cmocka_unit_test(flush_and_discard),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
