// align2 inspect: counts and problems of a pool, one streaming pass.
#include <fmt/format.h>

#include <iostream>

#include "core/data/inspect.h"
#include "jobs/cli.h"

namespace align2::cli {

int run_inspect(const Args& args) {
  if (args.positional.empty()) throw UsageError("give at least one POOL file");
  InspectOptions options;
  options.validation.image_root = args.get("image-root");
  options.validation.subset_field = args.get("subset-field");
  options.validation.max_record_bytes = std::uint64_t(int_option(args, "max-record-bytes", 16 << 20, 1, 1ll << 32));
  options.max_examples = std::size_t(int_option(args, "max-examples", 20, 0, 1'000'000));
  std::map<std::string, std::string> subsets;
  for (const std::string& item : args.all("subset")) {
    auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == item.size())
      throw UsageError(fmt::format("--subset {}: expected FILE=SUBSET", item));
    subsets[item.substr(0, eq)] = item.substr(eq + 1);
  }
  std::vector<PoolFile> files;
  for (const std::string& path : args.positional) {
    PoolFile f{path, ""};
    for (const auto& [name, subset] : subsets)
      if (path == name || (path.size() > name.size() &&
                           path.compare(path.size() - name.size(), name.size(), name) == 0 &&
                           path[path.size() - name.size() - 1] == '/'))
        f.subset = subset;
    files.push_back(f);
  }
  nlohmann::json report = inspect_pool(files, options);
  if (args.flag("json")) std::cout << report.dump() << "\n";
  else std::cout << format_inspect_report(report);
  return 0;
}

}  // namespace align2::cli
