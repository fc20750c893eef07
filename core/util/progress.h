// Progress of a stage on the terminal, shown by rank 0 for all ranks: items done out
// of the stage's total, items/s over this run's work (chunks resumed from an earlier run
// count as done but not toward the rate), and the ETA. On a terminal a bar redrawn in
// place (at most 5 times a second); otherwise one plain line every `interval_s` seconds
// (0 = no periodic lines), so that batch logs stay short. Lines go to stderr.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace align2 {

class ProgressMeter {
 public:
  // `total`: items of the stage (all ranks); `resumed`: items already committed by an
  // earlier run when the stage starts.
  ProgressMeter(std::string stage, std::uint64_t total, std::uint64_t resumed, double interval_s,
                std::FILE* out = stderr);

  // `done`: items committed so far, all ranks, resumed ones included. Prints when due.
  void update(std::uint64_t done);
  // True when update() would print now (callers skip costly progress queries otherwise).
  bool due() const;
  // Prints the final line (always, unless the meter is silent).
  void finish(std::uint64_t done);

  // The line as shown, for tests: "select_questions  1200/5000  24%  35.2 items/s  ETA 1m48s".
  std::string line(std::uint64_t done) const;

 private:
  using Clock = std::chrono::steady_clock;
  std::string stage_;
  std::uint64_t total_;
  std::uint64_t resumed_;
  double interval_s_;
  std::FILE* out_;
  bool tty_;
  Clock::time_point start_;
  Clock::time_point last_print_;
  bool printed_ = false;
};

// "1h02m", "3m07s", "12s"; "?" for a negative or non-finite number of seconds.
std::string format_duration(double seconds);

}  // namespace align2
