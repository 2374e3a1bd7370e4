// SPDX-License-Identifier: MIT
// gatewayd: the command line. Everything else is in Daemon and the config layer.
#include <getopt.h>
#include <signal.h>

#include <cstdio>
#include <string>

#include "config.hpp"
#include "daemon.hpp"
#include "gw/systemd.hpp"

#ifndef GW_PROJECT_VERSION
#error "GW_PROJECT_VERSION must come from CMake"
#endif

namespace {

constexpr int exit_config = 78;  // EX_CONFIG, which systemd also knows

void usage(FILE *out) {
  std::fprintf(out,
               "Usage: gatewayd [--config PATH] [--check-config]\n"
               "\n"
               "The gateway daemon: serves the routes of its configuration file, on sockets\n"
               "passed by systemd (gateway.socket) or bound by itself.\n"
               "\n"
               "  -c, --config PATH   configuration file (default %s)\n"
               "      --check-config  validate the configuration, print any errors, exit 0 or 78\n"
               "  -h, --help          show this help\n"
               "  -V, --version       show the version and build options\n"
               "\n"
               "Signals: SIGHUP reloads the configuration; SIGTERM or SIGINT drains clients\n"
               "and exits, a second one exits at once.\n"
               "See gatewayd(8) and gateway.conf(5).\n",
               gw::service::default_config_path);
}

// What the command line asks for.
struct Options {
  std::string config_path = gw::service::default_config_path;
  bool check_only = false;
};

// Parses the command line into `options`. Returns -1 to go on, or the exit
// code when it is already decided: 0 after --help or --version, 2 on a usage
// error (which is printed with the usage).
int parse_options(int argc, char **argv, Options &options) {
  static const option long_options[] = {{"config", required_argument, nullptr, 'c'},
                                        {"check-config", no_argument, nullptr, 'C'},
                                        {"help", no_argument, nullptr, 'h'},
                                        {"version", no_argument, nullptr, 'V'},
                                        {nullptr, 0, nullptr, 0}};
  for (int opt; (opt = getopt_long(argc, argv, "c:hV", long_options, nullptr)) != -1;) {
    switch (opt) {
      case 'c': options.config_path = optarg; break;
      case 'C': options.check_only = true; break;
      case 'h': usage(stdout); return 0;
      case 'V':
        std::printf(
            "gatewayd %s (systemd: %s)\n", GW_PROJECT_VERSION,
            gw::sd::available() ? "yes, socket activation, notify and watchdog" : "no, built with GW_WITH_SYSTEMD=OFF");
        return 0;
      default: usage(stderr); return 2;
    }
  }
  if (optind < argc) {
    std::fprintf(stderr, "gatewayd: unexpected argument '%s'\n", argv[optind]);
    usage(stderr);
    return 2;
  }
  return -1;
}

}  // namespace

int main(int argc, char **argv) {
  Options options;
  if (int rc = parse_options(argc, argv, options); rc >= 0) return rc;
  const std::string &config_path = options.config_path;
  const bool check_only = options.check_only;

  gw::service::ConfigResult loaded = gw::service::load_config(config_path);
  if (!loaded.ok()) {
    for (const std::string &error : loaded.errors)
      std::fprintf(stderr, "%s%s\n", check_only ? "" : "<3>", error.c_str());
    return exit_config;
  }
  if (check_only) {
    std::printf("%s: OK (%zu routes)\n", config_path.c_str(), loaded.config->routes.size());
    return 0;
  }
  // Writes use MSG_NOSIGNAL; this covers every other way to meet a closed pipe.
  signal(SIGPIPE, SIG_IGN);
  gw::service::Daemon daemon(config_path);
  if (int rc = daemon.start(*loaded.config)) return rc;
  return daemon.run();
}
