// align2 tokenize: JSONL {"text": ...} -> one {"ids": [...]} line per record, with the
// native LLaMA SentencePiece tokenizer (core/model/tokenizer.h).
#include <fmt/format.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "core/model/tokenizer.h"
#include "jobs/cli.h"

namespace align2::cli {

int run_tokenize(const Args& args) {
  const std::string model = args.get("tokenizer");
  const std::string input = args.get("input");
  if (model.empty()) throw UsageError("--tokenizer is required");
  if (input.empty()) throw UsageError("--input is required");
  if (!args.positional.empty()) throw UsageError(fmt::format("unexpected argument '{}'", args.positional[0]));
  const bool add_bos = !args.flag("no-bos");
  const Tokenizer tokenizer = Tokenizer::load(model);

  std::ifstream in(input, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("{}: cannot open", input));
  std::string out;
  std::uint64_t line_number = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank lines, as in JSONL pools
    nlohmann::json record;
    try {
      record = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      throw std::runtime_error(fmt::format("{} line {}: not JSON: {}", input, line_number, e.what()));
    }
    if (!record.is_object() || !record.contains("text") || !record["text"].is_string())
      throw std::runtime_error(
          fmt::format("{} line {}: expected an object with a string field \"text\"", input, line_number));
    const std::vector<std::int32_t> ids = tokenizer.encode(record["text"].get_ref<const std::string&>(), add_bos);
    out += "{\"ids\": [";
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (i) out += ", ";
      out += std::to_string(ids[i]);
    }
    out += "]}\n";
    if (out.size() > (1u << 20)) {
      std::cout << out;
      out.clear();
    }
  }
  if (in.bad()) throw std::runtime_error(fmt::format("{}: read error after line {}", input, line_number));
  std::cout << out << std::flush;
  return std::cout ? 0 : 1;
}

}  // namespace align2::cli
