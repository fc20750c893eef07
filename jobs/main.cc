// align2: git-style subcommands. Logic lives in the libraries; this file dispatches.
#include <fmt/format.h>

#include <cstdio>
#include <iostream>

#include "jobs/cli.h"

namespace {

void print_overview() {
  std::cout << "usage: align2 <command> [options]\n\n"
               "Curates multimodal instruction data the Align2LLaVA way: reward-model selection\n"
               "of questions and answers, then rewriting by the model's own LLM.\n\ncommands:\n";
  for (const auto& c : align2::cli::commands()) std::cout << fmt::format("  {:<12} {}\n", c.name, c.summary);
  std::cout << "\n`align2 <command> --help` explains a command.\n";
}

}  // namespace

int main(int argc, char** argv) {
  using namespace align2::cli;
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h" ||
      std::string(argv[1]) == "help") {
    print_overview();
    return argc < 2 ? 2 : 0;
  }
  const Command* command = nullptr;
  for (const Command& c : commands())
    if (c.name == argv[1]) command = &c;
  if (!command) {
    std::cerr << fmt::format("align2: unknown command '{}'; `align2 --help` lists the commands\n", argv[1]);
    return 2;
  }
  try {
    bool help = false;
    Args args = parse(*command, std::vector<std::string>(argv + 2, argv + argc), &help);
    if (help) {
      std::cout << command_help(*command);
      return 0;
    }
    return command->run(args);
  } catch (const UsageError& e) {
    std::cerr << fmt::format("align2 {}: {}\nusage: align2 {} {}\n", command->name, e.what(), command->name,
                             command->synopsis);
    return 2;
  } catch (const std::exception& e) {
    std::cerr << fmt::format("align2 {}: error: {}\n", command->name, e.what());
    return 1;
  }
}
