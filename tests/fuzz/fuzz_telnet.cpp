// SPDX-License-Identifier: MIT
// Fuzz target: the Telnet decoder and the COM-PORT-OPTION parser
// (gw/telnet.hpp), as an rfc2217 session uses them on a client's bytes.
//
// Input layout: byte 0's low bit sets binary mode, bytes 1-2 seed the chunk
// sizes; the rest is the client -> server stream. Checked: chunking changes
// no event; no subnegotiation is longer than the bound; every COM-PORT body
// that parses gives a known code, and its answer built with
// com_port_answer() decodes back to the same code and value; the option
// engine answers each negotiation with at most one command; escaping the
// decoded data and decoding it again gives the same data.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "gw/telnet.hpp"

namespace {

namespace tn = gw::telnet;

void require(bool condition, const char *what) {
  if (!condition) {
    std::fprintf(stderr, "fuzz_telnet: %s\n", what);
    std::abort();
  }
}

struct Events final : tn::Sink {
  std::string data;
  std::vector<std::string> log;
  void on_data(const uint8_t *p, size_t n) override { data.append(reinterpret_cast<const char *>(p), n); }
  void on_negotiation(uint8_t command, uint8_t option) override {
    log.push_back("n" + std::to_string(command) + "," + std::to_string(option) + "@" + std::to_string(data.size()));
  }
  void on_subnegotiation(const uint8_t *p, size_t n) override {
    require(n <= tn::Decoder::max_subnegotiation, "a subnegotiation past the bound");
    log.push_back("s" + std::string(reinterpret_cast<const char *>(p), n));
  }
  void on_command(uint8_t command) override { log.push_back("c" + std::to_string(command)); }
  void on_overflow() override { log.push_back("o"); }
};

Events decode(const uint8_t *data, size_t length, bool binary, uint32_t seed) {
  tn::Decoder decoder;
  decoder.set_binary(binary);
  Events events;
  size_t at = 0;
  while (at < length) {
    size_t piece = seed ? 1 + (seed % 17) : length - at;
    seed = seed * 1103515245u + 12345u;
    if (piece > length - at) piece = length - at;
    decoder.feed(data + at, piece, events);
    at += piece;
  }
  return events;
}

void check_com_port(const std::string &body) {
  tn::ComPortRequest request;
  const auto *p = reinterpret_cast<const uint8_t *>(body.data());
  if (!tn::parse_com_port(p, body.size(), request)) return;
  require(static_cast<uint8_t>(request.code) <= static_cast<uint8_t>(tn::ComPort::purge_data), "an unknown code");
  std::string answer;
  if (request.code == tn::ComPort::set_baudrate)
    tn::com_port_answer_baud(request.value, answer);
  else
    tn::com_port_answer(request.code, static_cast<uint8_t>(request.value), answer);
  Events back = decode(reinterpret_cast<const uint8_t *>(answer.data()), answer.size(), true, 0);
  require(back.log.size() == 1 && back.log[0].size() >= 3, "an answer does not decode to one subnegotiation");
  const std::string &sb = back.log[0];
  require(static_cast<uint8_t>(sb[2]) == static_cast<uint8_t>(request.code) + tn::server_offset, "answer code");
  if (request.code == tn::ComPort::set_baudrate) {
    require(sb.size() == 7, "baud answer length");
    const uint32_t baud = uint32_t{static_cast<uint8_t>(sb[3])} << 24 | uint32_t{static_cast<uint8_t>(sb[4])} << 16 |
                          uint32_t{static_cast<uint8_t>(sb[5])} << 8 | static_cast<uint8_t>(sb[6]);
    require(baud == request.value, "baud answer value");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 3) return 0;
  const bool binary = data[0] & 1;
  const uint32_t seed = uint32_t{data[1]} << 8 | data[2];
  data += 3;
  size -= 3;
  const Events whole = decode(data, size, binary, 0);
  const Events pieces = decode(data, size, binary, seed | 1);
  require(whole.data == pieces.data && whole.log == pieces.log, "chunking changed the events");

  tn::Options::Supported supported;
  supported.allow(tn::option_binary, true, true).allow(tn::option_com_port, true, true);
  tn::Options options(supported);
  for (const std::string &event : whole.log) {
    if (event[0] == 's') check_com_port(event.substr(1));
    if (event[0] != 'n') continue;
    unsigned command = 0, option = 0;
    std::sscanf(event.c_str() + 1, "%u,%u", &command, &option);
    std::string out;
    options.receive(static_cast<uint8_t>(command), static_cast<uint8_t>(option), out);
    require(out.empty() || out.size() == 3, "more than one answer to a negotiation");
  }

  std::string wire;
  tn::escape(reinterpret_cast<const uint8_t *>(whole.data.data()), whole.data.size(), binary, wire);
  const Events again = decode(reinterpret_cast<const uint8_t *>(wire.data()), wire.size(), binary, 0);
  require(again.log.empty() && again.data == whole.data, "escaped data does not decode back");
  return 0;
}
