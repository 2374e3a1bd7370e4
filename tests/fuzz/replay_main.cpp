// SPDX-License-Identifier: MIT
// A main() for fuzz targets outside libFuzzer: runs LLVMFuzzerTestOneInput once
// on every file named on the command line, or found in a directory named there.
// Used by the CTest tests fuzz_replay_NAME, so committed seeds and every crash
// regression run in every build, sanitizers included. A crash fails the test;
// the file being run is printed first, so a failure names its input.
#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
extern "C" __attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

namespace {

void collect(const std::string &path, std::vector<std::string> &files) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    std::fprintf(stderr, "fuzz replay: cannot stat %s\n", path.c_str());
    std::exit(2);
  }
  if (!S_ISDIR(st.st_mode)) {
    files.push_back(path);
    return;
  }
  DIR *dir = opendir(path.c_str());
  if (!dir) {
    std::fprintf(stderr, "fuzz replay: cannot open %s: %s\n", path.c_str(), std::strerror(errno));
    std::exit(2);
  }
  std::vector<std::string> names;
  errno = 0;
  while (dirent *entry = readdir(dir)) {
    if (entry->d_name[0] != '.') names.push_back(path + "/" + entry->d_name);
    errno = 0;
  }
  if (errno != 0) {
    std::fprintf(stderr, "fuzz replay: cannot read %s: %s\n", path.c_str(), std::strerror(errno));
    std::exit(2);
  }
  closedir(dir);
  std::sort(names.begin(), names.end());
  for (const std::string &name : names) collect(name, files);
}

}  // namespace

int main(int argc, char **argv) {
  if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) collect(argv[i], files);
  if (files.empty()) {
    std::fprintf(stderr, "fuzz replay: no inputs (a target needs a seed corpus)\n");
    return 2;
  }
  for (const std::string &file : files) {
    std::ifstream in(file, std::ios::binary);
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::fprintf(stderr, "fuzz replay: %s (%zu bytes)\n", file.c_str(), bytes.size());
    LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
  }
  std::printf("%zu passed, 0 failed\n", files.size());
  return 0;
}
