// Command-line parsing shared by the align2 subcommands: options with values
// ("--name VALUE" or "--name=VALUE"), boolean flags, positional arguments, --help.
#pragma once

#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace align2::cli {

struct Option {
  std::string name;        // without dashes
  std::string value_name;  // "" = boolean flag
  std::string help;
  bool repeatable = false;
};

struct Command {
  std::string name;        // "inspect"
  std::string synopsis;    // "[--image-root DIR] [--json] POOL..."
  std::string summary;     // one line, for `align2 --help`
  std::string description; // paragraphs for `align2 <name> --help`
  std::vector<Option> options;
  int (*run)(const struct Args&) = nullptr;
};

struct Args {
  std::map<std::string, std::vector<std::string>> values;  // option -> values given
  std::vector<std::string> positional;

  bool flag(const std::string& name) const { return values.count(name) != 0; }
  // The last value of an option, or `fallback`.
  std::string get(const std::string& name, const std::string& fallback = "") const;
  std::vector<std::string> all(const std::string& name) const;
};

// Wrong usage: main prints the message and the command's synopsis, exits 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Checked numeric options: the value of --name, or `fallback` when absent. A value that
// is not a number, not finite, or outside [min, max] is a UsageError naming the option.
std::int64_t int_option(const Args& args, const std::string& name, std::int64_t fallback, std::int64_t min,
                        std::int64_t max);
double real_option(const Args& args, const std::string& name, double fallback, double min, double max);

// Throws UsageError for unknown options or a missing value.
Args parse(const Command& command, const std::vector<std::string>& argv, bool* wants_help);
std::string command_help(const Command& command);

// Every subcommand, in the order `align2 --help` lists them.
const std::vector<Command>& commands();

}  // namespace align2::cli
