#include "jobs/cli.h"

#include <fmt/format.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>

namespace align2::cli {

std::string Args::get(const std::string& name, const std::string& fallback) const {
  auto it = values.find(name);
  return it == values.end() || it->second.empty() ? fallback : it->second.back();
}

std::vector<std::string> Args::all(const std::string& name) const {
  auto it = values.find(name);
  return it == values.end() ? std::vector<std::string>{} : it->second;
}

std::int64_t int_option(const Args& args, const std::string& name, std::int64_t fallback, std::int64_t min,
                        std::int64_t max) {
  if (!args.values.count(name)) return fallback;
  std::string text = args.get(name);
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno == ERANGE || v < min || v > max)
    throw UsageError(fmt::format("--{} {}: expected an integer in {}..{}", name, text, min, max));
  return v;
}

double real_option(const Args& args, const std::string& name, double fallback, double min, double max) {
  if (!args.values.count(name)) return fallback;
  std::string text = args.get(name);
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !std::isfinite(v) || v < min || v > max)
    throw UsageError(fmt::format("--{} {}: expected a number in [{}, {}]", name, text, min, max));
  return v;
}

Args parse(const Command& command, const std::vector<std::string>& argv, bool* wants_help) {
  Args args;
  *wants_help = false;
  bool options_done = false;
  for (std::size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (options_done || a.size() < 2 || a.compare(0, 2, "--") != 0) {
      args.positional.push_back(a);
      continue;
    }
    if (a == "--") {
      options_done = true;
      continue;
    }
    if (a == "--help" || a == "-h") {
      *wants_help = true;
      continue;
    }
    std::string name = a.substr(2), value;
    bool inline_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      inline_value = true;
    }
    const Option* opt = nullptr;
    for (const Option& o : command.options)
      if (o.name == name) opt = &o;
    if (!opt) throw UsageError(fmt::format("unknown option --{}", name));
    if (opt->value_name.empty()) {
      if (inline_value) throw UsageError(fmt::format("--{} takes no value", name));
      args.values[name].push_back("1");
      continue;
    }
    if (!inline_value) {
      if (i + 1 >= argv.size()) throw UsageError(fmt::format("--{} needs a value ({})", name, opt->value_name));
      value = argv[++i];
    }
    if (!opt->repeatable && args.values.count(name))
      throw UsageError(fmt::format("--{} given twice", name));
    args.values[name].push_back(value);
  }
  return args;
}

std::string command_help(const Command& c) {
  std::string out = fmt::format("usage: align2 {} {}\n\n{}\n", c.name, c.synopsis, c.description);
  if (!c.options.empty()) {
    out += "\noptions:\n";
    for (const Option& o : c.options) {
      std::string left = "--" + o.name + (o.value_name.empty() ? "" : " " + o.value_name);
      out += fmt::format("  {:<28} {}{}\n", left, o.help, o.repeatable ? " (repeatable)" : "");
    }
    out += fmt::format("  {:<28} {}\n", "--help", "show this help");
  }
  return out;
}

}  // namespace align2::cli
