// What CPU a benchmark ran on, for its first line (docs/performance.md keeps figures per machine).
#pragma once

#include <fstream>
#include <string>
#include <thread>

namespace align2::bench {

// "model name" of /proc/cpuinfo and the hardware threads, e.g. "AMD EPYC 7B13, 2 threads".
inline std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line, model = "unknown CPU";
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) {
      model = line.substr(line.find(':') + 1);
      model.erase(0, model.find_first_not_of(' '));
      break;
    }
  return model + ", " + std::to_string(std::thread::hardware_concurrency()) + " threads";
}

}  // namespace align2::bench
