#include "core/util/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cmath>

namespace align2 {

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  auto total = static_cast<std::uint64_t>(std::llround(s));
  std::uint64_t h = total / 3600, m = total / 60 % 60, sec = total % 60;
  if (h) return fmt::format("{}h{:02}m", h, m);
  if (m) return fmt::format("{}m{:02}s", m, sec);
  return fmt::format("{}s", sec);
}

ProgressMeter::ProgressMeter(std::string stage, std::uint64_t total, std::uint64_t resumed, double interval_s,
                             std::FILE* out)
    : stage_(std::move(stage)),
      total_(total),
      resumed_(resumed),
      interval_s_(interval_s),
      out_(out),
      tty_(out && isatty(fileno(out))),
      start_(Clock::now()),
      last_print_(start_) {}

std::string ProgressMeter::line(std::uint64_t done) const {
  double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
  double fresh = done > resumed_ ? double(done - resumed_) : 0.0;
  double rate = elapsed > 0 ? fresh / elapsed : 0.0;
  double percent = total_ ? 100.0 * double(done) / double(total_) : 100.0;
  std::string eta = done >= total_ ? format_duration(elapsed) + " elapsed"
                                   : "ETA " + (rate > 0 ? format_duration(double(total_ - done) / rate) : "?");
  std::string text = fmt::format("{}  {}/{}  {:.0f}%  {:.1f} items/s  {}", stage_, done, total_, percent, rate, eta);
  if (resumed_) text += fmt::format("  ({} resumed)", resumed_);
  return text;
}

bool ProgressMeter::due() const {
  if (!out_) return false;
  double since = std::chrono::duration<double>(Clock::now() - last_print_).count();
  if (tty_) return !printed_ || since >= 0.2;
  return interval_s_ > 0 && since >= interval_s_;
}

void ProgressMeter::update(std::uint64_t done) {
  if (!due()) return;
  auto now = Clock::now();
  if (tty_) {
    int width = 30;
    int filled = total_ ? int(double(width) * double(done) / double(total_)) : width;
    std::string bar = std::string(std::size_t(std::min(filled, width)), '#') +
                      std::string(std::size_t(width - std::min(filled, width)), '.');
    std::fprintf(out_, "\r[%s] %s\033[K", bar.c_str(), line(done).c_str());
  } else {
    std::fprintf(out_, "%s\n", line(done).c_str());
  }
  std::fflush(out_);
  last_print_ = now;
  printed_ = true;
}

void ProgressMeter::finish(std::uint64_t done) {
  if (!out_) return;
  if (tty_) std::fprintf(out_, "\r[%s] %s\033[K\n", std::string(30, '#').c_str(), line(done).c_str());
  else std::fprintf(out_, "%s\n", line(done).c_str());
  std::fflush(out_);
}

}  // namespace align2
