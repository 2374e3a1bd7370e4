// SPDX-License-Identifier: MIT
// The Telnet / COM-PORT-OPTION codec alone (gw/telnet.hpp): one stream of
// every kind of event decoded the same when split at every byte; all 256
// byte values escaped and decoded back, in binary and NVT mode; an oversized
// subnegotiation dropped without growing; the option rules (supported
// options agreed once, unknown ones refused, no answer loops); COM-PORT
// requests parsed and answers built with their values escaped.
#include <string>
#include <vector>

extern "C" {
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
}

#include "gw/telnet.hpp"

namespace {

namespace tn = gw::telnet;

// Every event as one line of text, so that two decodings compare as strings.
struct Recorder final : tn::Sink {
  std::string data;
  std::vector<std::string> events;
  void flush_data() {
    if (!data.empty()) events.push_back("data:" + data);
    data.clear();
  }
  void on_data(const uint8_t *bytes, size_t length) override {
    data.append(reinterpret_cast<const char *>(bytes), length);
  }
  void on_negotiation(uint8_t command, uint8_t option) override {
    flush_data();
    events.push_back("neg:" + std::to_string(command) + "," + std::to_string(option));
  }
  void on_subnegotiation(const uint8_t *body, size_t length) override {
    flush_data();
    events.push_back("sb:" + std::string(reinterpret_cast<const char *>(body), length));
  }
  void on_command(uint8_t command) override {
    flush_data();
    events.push_back("cmd:" + std::to_string(command));
  }
  void on_overflow() override {
    flush_data();
    events.push_back("overflow");
  }
};

std::string bytes(std::initializer_list<int> list) {
  std::string out;
  for (int b : list) out.push_back(static_cast<char>(b));
  return out;
}

std::vector<std::string> decode(const std::string &stream, bool binary, size_t split = 0) {
  tn::Decoder decoder;
  decoder.set_binary(binary);
  Recorder recorder;
  const auto *p = reinterpret_cast<const uint8_t *>(stream.data());
  if (split == 0) {
    decoder.feed(p, stream.size(), recorder);
  } else {
    decoder.feed(p, split, recorder);
    decoder.feed(p + split, stream.size() - split, recorder);
  }
  recorder.flush_data();
  return recorder.events;
}

// One stream with data, IAC IAC, a negotiation, a subnegotiation holding an
// escaped 0xFF, NOP, AYT, an IAC before a non-command byte, and CR NUL.
const std::string mixed = "ab" + bytes({255, 255}) + "c" + bytes({255, 253, 44}) +
                          bytes({255, 250, 44, 1, 0, 0, 255, 255, 255, 240}) + "d" + bytes({255, 241, 255, 246}) +
                          bytes({255, 7}) + "e\r" + bytes({0}) + "f\r\ng";

void mixed_stream_decodes_the_same_split_at_every_byte(void **) {
  const std::vector<std::string> want = {
      "data:ab\xff"
      "c",
      "neg:253,44",
      "sb:" + bytes({44, 1, 0, 0, 255}),
      "data:d",
      "cmd:241",
      "cmd:246",
      "data:e\r\r\ng",
  };
  // The NVT rules drop the NUL after CR; IAC 7 is no command and is dropped.
  std::vector<std::string> nvt = want;
  nvt.back() = "data:e\rf\r\ng";
  const std::vector<std::string> whole = decode(mixed, false);
  assert_true(whole == nvt);
  for (size_t split = 1; split < mixed.size(); ++split) assert_true(decode(mixed, false, split) == nvt);
  // In binary mode the NUL is data.
  std::vector<std::string> binary = nvt;
  binary.back() = "data:e\r" + bytes({0}) + "f\r\ng";
  for (size_t split = 0; split < mixed.size(); ++split) assert_true(decode(mixed, true, split) == binary);
}

void all_256_values_escape_and_decode_back(void **) {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  all += all;  // also 0xFF followed by 0x00
  for (bool binary : {true, false}) {
    std::string wire;
    tn::escape(reinterpret_cast<const uint8_t *>(all.data()), all.size(), binary, wire);
    // Every 0xFF doubled; without binary mode every CR is followed by NUL.
    assert_int_equal(wire.size(), all.size() + 2 + (binary ? 0 : 2));
    for (size_t split = 0; split < wire.size(); split += 7) {
      const std::vector<std::string> events = decode(wire, binary, split);
      assert_int_equal(events.size(), 1);
      assert_true(events[0] == "data:" + all);
    }
  }
}

void oversized_subnegotiation_is_dropped_not_grown(void **) {
  std::string stream =
      bytes({255, 250, 44}) + std::string(100000, 'x') + bytes({255, 240}) + "ok" + bytes({255, 250, 44, 0, 255, 240});
  const std::vector<std::string> want = {"overflow", "data:ok", "sb:" + bytes({44, 0})};
  assert_true(decode(stream, true) == want);
  // Exactly the limit still fits; one byte more does not.
  std::string fits = bytes({255, 250}) + std::string(tn::Decoder::max_subnegotiation, 'y') + bytes({255, 240});
  assert_true(decode(fits, true) ==
              std::vector<std::string>{"sb:" + std::string(tn::Decoder::max_subnegotiation, 'y')});
  std::string over = bytes({255, 250}) + std::string(tn::Decoder::max_subnegotiation + 1, 'y') + bytes({255, 240});
  assert_true(decode(over, true) == std::vector<std::string>{"overflow"});
  // A subnegotiation interrupted by another command ends there.
  assert_true(decode(bytes({255, 250, 44, 1, 255, 253, 3}) + "z", true) ==
              (std::vector<std::string>{"neg:253,3", "data:z"}));
  // An endless one holds the decoder in it, without growing.
  tn::Decoder decoder;
  Recorder recorder;
  decoder.feed(reinterpret_cast<const uint8_t *>(stream.data()), 3, recorder);
  const std::string junk(65536, 'j');
  for (int i = 0; i < 64; ++i) decoder.feed(reinterpret_cast<const uint8_t *>(junk.data()), junk.size(), recorder);
  assert_true(decoder.in_subnegotiation());
  assert_true(recorder.events.empty() && recorder.data.empty());
}

tn::Options server_options() {
  tn::Options::Supported supported;
  supported.allow(tn::option_binary, true, true)
      .allow(tn::option_com_port, true, true)
      .allow(tn::option_sga, true, true);
  return tn::Options(supported);
}

void options_agree_once_and_refuse_unknown(void **) {
  tn::Options options = server_options();
  std::string out;
  options.request(tn::option_binary, true, out);
  options.request(tn::option_binary, true, out);  // asked already: not again
  assert_true(out == bytes({255, 251, 0}));
  out.clear();
  // The answer to our request is not answered; a repeat changes nothing.
  options.receive(tn::DO, tn::option_binary, out);
  options.receive(tn::DO, tn::option_binary, out);
  assert_true(out.empty());
  assert_true(options.local_on(tn::option_binary));
  // The peer's own request is agreed to, once.
  options.receive(tn::WILL, tn::option_com_port, out);
  options.receive(tn::WILL, tn::option_com_port, out);
  assert_true(out == bytes({255, 253, 44}));
  assert_true(options.remote_on(tn::option_com_port));
  out.clear();
  // Unknown options and ECHO are refused, each time asked, never enabled.
  for (uint8_t option : {uint8_t{1}, uint8_t{24}, uint8_t{200}, uint8_t{255}}) {
    options.receive(tn::DO, option, out);
    options.receive(tn::WILL, option, out);
    assert_false(options.local_on(option));
    assert_false(options.remote_on(option));
  }
  assert_true(out == bytes({255, 252, 1,   255, 254, 1,   255, 252, 24,  255, 254, 24,
                            255, 252, 200, 255, 254, 200, 255, 252, 255, 255, 254, 255}));
  out.clear();
  // Their refusal (WONT/DONT) of something off is not answered: no loop.
  options.receive(tn::WONT, 1, out);
  options.receive(tn::DONT, 1, out);
  assert_true(out.empty());
  // Switching an option off is acknowledged once.
  options.receive(tn::DONT, tn::option_binary, out);
  options.receive(tn::DONT, tn::option_binary, out);
  assert_true(out == bytes({255, 252, 0}));
  assert_false(options.local_on(tn::option_binary));
  out.clear();
  // Our request refused: nothing answered, the option stays off.
  options.request(tn::option_sga, false, out);
  out.clear();
  options.receive(tn::DONT, tn::option_sga, out);
  options.receive(tn::WONT, tn::option_sga, out);
  assert_true(out.empty());
  assert_false(options.remote_on(tn::option_sga));
}

// Two option engines talking to each other settle, whatever they ask first.
void two_sides_never_loop(void **) {
  tn::Options a = server_options(), b = server_options();
  std::string to_b, to_a;
  a.request(tn::option_binary, true, to_b);
  a.request(tn::option_com_port, false, to_b);
  b.request(tn::option_binary, true, to_a);
  b.request(tn::option_com_port, true, to_a);
  b.request(1, false, to_a);  // DO ECHO, which a refuses
  for (int round = 0; round < 10 && !(to_a.empty() && to_b.empty()); ++round) {
    std::string next_a, next_b;
    for (size_t i = 0; i + 2 < to_b.size(); i += 3)
      b.receive(static_cast<uint8_t>(to_b[i + 1]), static_cast<uint8_t>(to_b[i + 2]), next_a);
    for (size_t i = 0; i + 2 < to_a.size(); i += 3)
      a.receive(static_cast<uint8_t>(to_a[i + 1]), static_cast<uint8_t>(to_a[i + 2]), next_b);
    to_a = next_a;
    to_b = next_b;
  }
  assert_true(to_a.empty() && to_b.empty());
  assert_true(a.local_on(tn::option_binary) && b.remote_on(tn::option_binary));
  assert_true(b.local_on(tn::option_binary) && a.remote_on(tn::option_binary));
  assert_true(a.remote_on(tn::option_com_port) && b.local_on(tn::option_com_port));
  assert_false(a.local_on(1));
}

void com_port_requests_parse(void **) {
  tn::ComPortRequest request;
  const uint8_t baud[] = {44, 1, 0, 0, 0x4b, 0x00};
  assert_true(tn::parse_com_port(baud, sizeof baud, request));
  assert_int_equal(static_cast<int>(request.code), 1);
  assert_int_equal(request.value, 19200);
  const uint8_t short_baud[] = {44, 1, 0, 0, 0x4b};
  assert_false(tn::parse_com_port(short_baud, sizeof short_baud, request));
  const uint8_t parity[] = {44, 3, 3};
  assert_true(tn::parse_com_port(parity, sizeof parity, request));
  gw::Parity p = gw::Parity::none;
  assert_true(tn::from_code(tn::parity_codes, static_cast<uint8_t>(request.value), p));
  assert_int_equal(static_cast<int>(p), static_cast<int>(gw::Parity::even));
  const uint8_t no_value[] = {44, 5};
  assert_false(tn::parse_com_port(no_value, sizeof no_value, request));
  const uint8_t poll[] = {44, 7};
  assert_true(tn::parse_com_port(poll, sizeof poll, request));
  const uint8_t signature[] = {44, 0, 'p', 'y'};
  assert_true(tn::parse_com_port(signature, sizeof signature, request));
  assert_true(request.text == "py");
  const uint8_t unknown[] = {44, 13, 1};
  assert_false(tn::parse_com_port(unknown, sizeof unknown, request));
  const uint8_t other_option[] = {24, 1, 0, 0, 0, 0};
  assert_false(tn::parse_com_port(other_option, sizeof other_option, request));
  assert_false(tn::parse_com_port(baud, 1, request));
}

void com_port_answers_escape_their_values(void **) {
  std::string out;
  tn::com_port_answer_baud(0x0001c2ff, out);  // a rate whose last byte is 0xFF
  assert_true(out == bytes({255, 250, 44, 101, 0, 1, 0xc2, 255, 255, 255, 240}));
  out.clear();
  tn::com_port_answer(tn::ComPort::set_control, tn::control::dtr_on, out);
  assert_true(out == bytes({255, 250, 44, 105, 8, 255, 240}));
  // The answer decodes back to the same body.
  out.clear();
  tn::com_port_answer_baud(0xffffffff, out);
  const std::vector<std::string> events = decode(out, true);
  assert_true(events == std::vector<std::string>{"sb:" + bytes({44, 101, 255, 255, 255, 255})});
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(mixed_stream_decodes_the_same_split_at_every_byte),
      cmocka_unit_test(all_256_values_escape_and_decode_back),
      cmocka_unit_test(oversized_subnegotiation_is_dropped_not_grown),
      cmocka_unit_test(options_agree_once_and_refuse_unknown),
      cmocka_unit_test(two_sides_never_loop),
      cmocka_unit_test(com_port_requests_parse),
      cmocka_unit_test(com_port_answers_escape_their_values),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
