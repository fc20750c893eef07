// Fuzz target: the job config parser (parse_job_config), as `align2 curate --config job.json
// --set key=value ...` drives it.
// Input: the config's JSON text, optionally followed by a line "--" and then one override
// ("key=value") per line. Text that is not JSON is the caller's refusal (read_job_config_json)
// and ends the input. parse_job_config must give a config or throw std::runtime_error; a config
// it gives parses again from its own `effective` JSON to the same config and fingerprint.
// Relative paths resolve against examples/demo (so the demo's "images" folder exists).
// Seeds: test/fuzz/corpus/job_config/ (examples/demo/job.json and variants with every key).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/pipeline/job_config.h"
#include "test/fuzz/fuzz_common.h"

using namespace align2;
using align2::fuzz::expect_clean_errors;

namespace {
constexpr const char* kTarget = "job_config";
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::string_view text = input;
  std::vector<std::string> overrides;
  if (const std::size_t sep = input.find("\n--\n"); sep != std::string_view::npos) {
    text = input.substr(0, sep);
    std::string_view rest = input.substr(sep + 4);
    while (!rest.empty()) {
      const std::size_t nl = rest.find('\n');
      overrides.emplace_back(rest.substr(0, nl));
      rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    }
  }
  nlohmann::json config = nlohmann::json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded()) return 0;

  const std::string base = ALIGN2_SOURCE_DIR "/examples/demo";
  JobConfig parsed;
  if (!expect_clean_errors(kTarget, [&] { parsed = parse_job_config(config, base, overrides, "fuzz.json"); }))
    return 0;
  FUZZ_CHECK(kTarget, parsed.fingerprint.size() == 64, "fingerprint");
  // `effective` holds every path resolved (against `base`, or against the working folder for
  // paths given by overrides): parsed again with the working folder as base it must give the
  // same config.
  JobConfig again;
  std::string error;
  const bool ok =
      expect_clean_errors(kTarget, [&] { again = parse_job_config(parsed.effective, ".", {}, "again.json"); }, &error);
  FUZZ_CHECK(kTarget, ok, "the effective config of an accepted config is refused: " + error);
  FUZZ_CHECK(kTarget, again.fingerprint == parsed.fingerprint && again.effective == parsed.effective,
             "the effective config parses to another config");
  return 0;
}
