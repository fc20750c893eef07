#include "core/store/output_layout.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>

namespace align2 {

namespace fs = std::filesystem;

const std::vector<std::string>& stage_order() {
  static const std::vector<std::string> order = {"select_questions", "select_answers", "rewrite"};
  return order;
}

std::string shard_path(const std::string& output_dir, const std::string& stage, int rank) {
  return (fs::path(output_dir) / "shards" / stage / fmt::format("rank-{:05d}.h5", rank)).string();
}

std::vector<std::string> find_shards(const std::string& output_dir) {
  std::vector<std::string> out;
  fs::path root = fs::path(output_dir) / "shards";
  if (!fs::is_directory(root)) return out;
  for (const std::string& stage : stage_order()) {
    fs::path dir = root / stage;
    if (!fs::is_directory(dir)) continue;
    for (const auto& entry : fs::directory_iterator(dir)) {
      std::string name = entry.path().filename().string();
      if (entry.is_regular_file() && name.rfind("rank-", 0) == 0 && entry.path().extension() == ".h5")
        out.push_back(entry.path().string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace align2
