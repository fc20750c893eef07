// align2 prompt: the LLaVA conversation template applied to every record of a pool,
// one JSON line per record (core/model/chat_template.h).
#include <fmt/format.h>

#include <algorithm>
#include <iostream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "core/model/chat_template.h"
#include "core/data/corpus_index.h"
#include "core/data/corpus_reader.h"
#include "jobs/cli.h"

namespace align2::cli {
namespace {

// Compact JSON, with any byte that is not UTF-8 replaced by U+FFFD rather than thrown on.
std::string json_line(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace

int run_prompt(const Args& args) {
  const std::string name = args.get("template");
  const std::string input = args.get("input");
  if (name.empty()) throw UsageError("--template is required (vicuna_v1, llava_v1 or plain)");
  if (input.empty()) throw UsageError("--input is required");
  if (!args.positional.empty()) throw UsageError(fmt::format("unexpected argument '{}'", args.positional[0]));
  TemplateKind kind;
  try {
    kind = template_from_name(name);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  const bool inference = args.flag("inference");

  IndexOptions options;
  options.validation.accept_open_question = inference;  // an evaluation set's records end with a question
  const PoolIndex index = build_index({PoolFile{input, ""}}, options);
  CorpusReader reader(index);
  const std::uint64_t total = index.entries.size();
  constexpr std::uint64_t kChunk = 1024;  // records read at a time
  for (std::uint64_t begin = 0; begin < total; begin += kChunk) {
    std::string out;
    for (const Sample& s : reader.read(begin, std::min(total, begin + kChunk))) {
      nlohmann::json line;
      line["id"] = s.id;
      if (s.status != Status::valid) {
        line["status"] = status_name(s.status);
        line["reason"] = reason_name(s.reason);
        line["message"] = s.message;
        out += json_line(line);
        continue;
      }
      const bool has_image = !s.image.empty();
      try {
        if (inference) {  // the prompt that answers the last question (its answer, if any, left out)
          const std::vector<Turn> before(s.turns.begin(), s.turns.end() - 1);
          line["prompt"] = render_inference(kind, before, s.turns.back().question, has_image);
        } else {
          line["prompt"] = render_training(kind, s.turns, has_image);
        }
      } catch (const std::invalid_argument& e) {
        line["status"] = "unrenderable";
        line["reason"] = "template";
        line["message"] = fmt::format("{} record #{} (line {}, id \"{}\"): template {}: {}", input,
                                      index.entries[s.index].index_in_file, index.entries[s.index].line, s.id, name,
                                      e.what());
      }
      out += json_line(line);
    }
    std::cout << out;
  }
  std::cout << std::flush;
  return std::cout ? 0 : 1;
}

}  // namespace align2::cli
