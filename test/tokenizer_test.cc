// The native tokenizer (core/model/tokenizer.h) against libsentencepiece 0.1.97, the
// reference, on real models and thousands of strings: llama.cpp's tokenizer stress
// cases, every string of the real LLaVA files, and generated strings (whitespace runs,
// CJK, emoji, combining marks, control characters, invalid UTF-8). Also synthetic
// variants of the real vocabularies for the paths LLaMA does not use (user-defined
// and UNUSED pieces, no byte fallback, score ties, remove_extra_whitespaces, no dummy
// prefix), malformed model files, and the `align2 tokenize` command.
//
// Torch-free on purpose: Debian's libsentencepiece embeds protobuf 3.14 and crashes
// any process that also links libtorch.
#include <gtest/gtest.h>
#include <sentencepiece_processor.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>

#include "core/model/tokenizer.h"
#include "test/test_support.h"

namespace align2 {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Reference = sentencepiece::SentencePieceProcessor;

std::string llama_path() { return test::shared_path("tokenizers/llama/tokenizer.model"); }
std::string stories_path() { return test::shared_path("models/stories260K-hf/tokenizer.model"); }

// Printable form of arbitrary bytes for failure messages.
std::string escaped(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c >= 0x20 && c < 0x7F) out += static_cast<char>(c);
    else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", c);
      out += buf;
    }
  }
  return out;
}

std::string ids_text(const std::vector<int>& ids) {
  std::string out = "[";
  for (std::size_t i = 0; i < ids.size(); ++i) out += (i ? ", " : "") + std::to_string(ids[i]);
  return out + "]";
}

std::unique_ptr<Reference> reference_from_file(const std::string& path) {
  auto sp = std::make_unique<Reference>();
  const auto status = sp->Load(path);
  if (!status.ok()) throw std::runtime_error("sentencepiece cannot load " + path + ": " + status.ToString());
  return sp;
}

std::unique_ptr<Reference> reference_from_bytes(const std::string& bytes) {
  auto sp = std::make_unique<Reference>();
  const auto status = sp->LoadFromSerializedProto(bytes);
  if (!status.ok()) return nullptr;
  return sp;
}

// ---------------------------------------------------------------------------------
// The strings

// llama.cpp's ggml-vocab-*.gguf.inp format: cases separated by "\n__ggml_vocab_test__\n".
std::vector<std::string> llama_cpp_cases() {
  const std::string raw = test::read_file(test::shared_path("data/tokenizer_inputs/llama_spm_cases.txt"));
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> cases;
  std::size_t begin = 0;
  for (std::size_t pos; (pos = raw.find(sep, begin)) != std::string::npos; begin = pos + sep.size())
    cases.push_back(raw.substr(begin, pos - begin));
  if (begin < raw.size()) cases.push_back(raw.substr(begin));
  return cases;
}

void collect_strings(const json& j, std::vector<std::string>* out) {
  if (j.is_string()) out->push_back(j.get<std::string>());
  else if (j.is_array() || j.is_object())
    for (const json& v : j) collect_strings(v, out);
}

// Every string value of every record of the real LLaVA files (the human and gpt turn
// texts, instructions, answers, captions), and the GPT-4 generation prompts, whole
// and line by line.
std::vector<std::string> llava_texts() {
  std::vector<std::string> texts;
  const fs::path dir = test::shared_path("data/llava");
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  for (const fs::path& p : files) {
    const std::string content = test::read_file(p.string());
    if (p.extension() == ".json") {
      collect_strings(json::parse(content), &texts);
    } else if (p.extension() == ".jsonl") {
      std::istringstream in(content);
      for (std::string line; std::getline(in, line);)
        if (!line.empty()) collect_strings(json::parse(line), &texts);
    } else if (p.extension() == ".txt") {
      texts.push_back(content);
      std::istringstream in(content);
      for (std::string line; std::getline(in, line);) texts.push_back(line);
    }
  }
  return texts;
}

// Random mixes of everything that stresses a SentencePiece encoder.
std::vector<std::string> generated_strings(std::size_t count, unsigned seed, const std::vector<std::string>& words) {
  static const std::vector<std::string> kWhitespace = {" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n",
                                                       " \n ", "    \t", "\u00a0", "\u3000", "\u2581", "\u2581 "};
  static const std::vector<std::string> kPunct = {".", ",", "!", "?", ";", ":", "'", "\"", "(", ")", "[", "]",
                                                  "{", "}", "-", "--", "...", "/", "\\", "#", "@", "&", "*", "%",
                                                  "$", "<", ">", "=", "+", "_", "~", "`", "^", "|"};
  static const std::vector<std::string> kSpecial = {"<s>", "</s>", "<unk>", "<pad>", "<0x41>", "<image>",
                                                    "<image>\n", "\u2581\u2581", "\xEF\xBF\xBD"};
  static const std::vector<std::string> kMultibyte = {
      "é", "ß", "ñ", "Ä", "ø", "œ", "ı", "İ", "中", "文", "中文", "日本語", "の", "ひらがな", "カタカナ",
      "한국어", "Привет", "мир", "العربية", "עברית", "ไทย", "हिन्दी", "Ελληνικά", "ქართული", "ሰላም",
      "😀", "👍", "👍🏽", "👨‍👩‍👧", "🇺🇸", "🦙", "❤️", "✅", "🚀", "∑", "∞", "≈", "€", "£", "©", "™", "½",
      "e\u0301", "a\u0308", "n\u0303", "\u0301", "\u200d", "\u200b", "\ufeff", "\U0010FFFD", "𝔘𝔫𝔦"};
  static const std::vector<std::string> kInvalid = {"\x80", "\xBF", "\xFF", "\xFE", "\xC3", "\xC0\xAF", "\xC1\xBF",
                                                    "\xE2\x82", "\xE0\x80\x80", "\xED\xA0\x80", "\xED\xBF\xBF",
                                                    "\xF0\x9F\x98", "\xF4\x90\x80\x80", "\xF8\x88\x80\x80\x80",
                                                    "\xF0\x80\x80\x80", "\xC3(", "\xE2\x28\xA1"};
  std::mt19937 rng(seed);
  auto pick = [&rng](const std::vector<std::string>& v) -> const std::string& {
    return v[std::uniform_int_distribution<std::size_t>(0, v.size() - 1)(rng)];
  };
  auto coin = [&rng](int percent) { return std::uniform_int_distribution<int>(0, 99)(rng) < percent; };
  std::vector<std::string> out;
  out.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    std::string s;
    if (coin(25)) s += std::string(std::uniform_int_distribution<int>(1, 4)(rng), ' ');
    const int parts = std::uniform_int_distribution<int>(0, 30)(rng);
    for (int k = 0; k < parts; ++k) {
      const int kind = std::uniform_int_distribution<int>(0, 99)(rng);
      if (kind < 35) s += pick(words);
      else if (kind < 55) s += pick(kWhitespace);
      else if (kind < 63) s += std::to_string(std::uniform_int_distribution<int>(0, 100000)(rng));
      else if (kind < 72) s += pick(kPunct);
      else if (kind < 85) s += pick(kMultibyte);
      else if (kind < 90) s += pick(kInvalid);
      else if (kind < 94) s += static_cast<char>(std::uniform_int_distribution<int>(1, 31)(rng));  // no NUL
      else if (kind < 96) s += "\x7F";
      else if (kind < 98) s += pick(kSpecial);
      else s += static_cast<char>(std::uniform_int_distribution<int>(0x21, 0x7E)(rng));
    }
    if (coin(25)) s += std::string(std::uniform_int_distribution<int>(1, 4)(rng), ' ');
    out.push_back(std::move(s));
  }
  return out;
}

struct Corpus {
  std::vector<std::string> llama_cpp, llava, generated;
  std::size_t size() const { return llama_cpp.size() + llava.size() + generated.size(); }
  std::vector<const std::string*> all() const {
    std::vector<const std::string*> v;
    for (const auto* group : {&llama_cpp, &llava, &generated})
      for (const std::string& s : *group) v.push_back(&s);
    return v;
  }
};

const Corpus& corpus() {
  static const Corpus c = [] {
    Corpus c;
    c.llama_cpp = llama_cpp_cases();
    c.llava = llava_texts();
    std::vector<std::string> words;
    for (const std::string& t : c.llava) {
      std::istringstream in(t);
      for (std::string w; in >> w && words.size() < 20000;) words.push_back(w);
    }
    c.generated = generated_strings(3000, 20240611, words);
    return c;
  }();
  return c;
}

// ---------------------------------------------------------------------------------
// Comparison with the reference

// Compares encode (without and with BOS) and decode(encode) with sentencepiece on
// every corpus string; returns how many strings were compared.
std::size_t compare_on_corpus(const Tokenizer& ours, const Reference& ref, const std::string& label) {
  std::size_t compared = 0, failures = 0;
  for (const std::string* text : corpus().all()) {
    std::vector<int> expected;
    const auto status = ref.Encode(*text, &expected);
    EXPECT_TRUE(status.ok()) << label << ": sentencepiece fails on \"" << escaped(*text) << "\"";
    const std::vector<std::int32_t> got = ours.encode(*text, false);
    std::vector<int> expected_bos = {ref.bos_id()};
    expected_bos.insert(expected_bos.end(), expected.begin(), expected.end());
    const std::vector<std::int32_t> got_bos = ours.encode(*text, true);
    const std::string expected_text = ref.DecodeIds(expected);
    const std::string got_text = ours.decode(expected);
    const std::string expected_text_bos = ref.DecodeIds(expected_bos);
    const std::string got_text_bos = ours.decode(expected_bos);
    const bool ok = got == expected && got_bos == expected_bos && got_text == expected_text &&
                    got_text_bos == expected_text_bos;
    if (!ok && ++failures <= 10) {
      ADD_FAILURE() << label << ": mismatch on \"" << escaped(*text) << "\"\n  sentencepiece ids " << ids_text(expected)
                    << "\n  ours              " << ids_text(got) << "\n  sentencepiece text \""
                    << escaped(expected_text) << "\"\n  ours              \"" << escaped(got_text) << "\"";
    }
    ++compared;
  }
  EXPECT_EQ(failures, 0u) << label << ": " << failures << " of " << compared << " strings differ";
  return compared;
}

// decode() of random id sequences (heavy on byte pieces, with control and unknown
// pieces, at the start and in the middle) against DecodeIds.
std::size_t compare_decode_random(const Tokenizer& ours, const Reference& ref, const std::string& label,
                                  unsigned seed) {
  std::vector<int> bytes, specials, all;
  for (int id = 0; id < ours.vocab_size(); ++id) {
    const PieceType t = ours.piece_type(id);
    if (t == PieceType::byte) bytes.push_back(id);
    else if (t == PieceType::control || t == PieceType::unknown) specials.push_back(id);
    all.push_back(id);
  }
  std::mt19937 rng(seed);
  auto pick = [&rng](const std::vector<int>& v) { return v[std::uniform_int_distribution<std::size_t>(0, v.size() - 1)(rng)]; };
  std::size_t compared = 0, failures = 0;
  for (int n = 0; n < 3000; ++n) {
    std::vector<int> ids;
    const int length = std::uniform_int_distribution<int>(0, 24)(rng);
    for (int k = 0; k < length; ++k) {
      const int kind = std::uniform_int_distribution<int>(0, 99)(rng);
      if (kind < 40 && !bytes.empty()) ids.push_back(pick(bytes));
      else if (kind < 55 && !specials.empty()) ids.push_back(pick(specials));
      else if (kind < 65 && !bytes.empty()) {
        // The byte pieces of one well-formed character, sometimes cut short.
        static const std::vector<std::string> kChars = {"é", "中", "😀", "\u2581", "\xEF\xBF\xBD", "\U0010FFFF"};
        const std::string c = kChars[std::uniform_int_distribution<std::size_t>(0, kChars.size() - 1)(rng)];
        const std::size_t keep = std::uniform_int_distribution<int>(0, 3)(rng) == 0 ? c.size() - 1 : c.size();
        for (std::size_t b = 0; b < keep; ++b) {
          char name[8];
          std::snprintf(name, sizeof name, "<0x%02X>", static_cast<unsigned char>(c[b]));
          ids.push_back(ref.PieceToId(name));
        }
      } else ids.push_back(pick(all));
    }
    const std::string expected = ref.DecodeIds(ids);
    const std::string got = ours.decode(ids);
    if (got != expected && ++failures <= 10)
      ADD_FAILURE() << label << ": decode " << ids_text(ids) << "\n  sentencepiece \"" << escaped(expected)
                    << "\"\n  ours          \"" << escaped(got) << "\"";
    ++compared;
  }
  EXPECT_EQ(failures, 0u) << label << ": " << failures << " of " << compared << " id sequences decode differently";
  return compared;
}

// Pieces, types and special ids agree with the reference.
void compare_vocabulary(const Tokenizer& ours, const Reference& ref) {
  ASSERT_EQ(ours.vocab_size(), ref.GetPieceSize());
  EXPECT_EQ(ours.bos_id(), ref.bos_id());
  EXPECT_EQ(ours.eos_id(), ref.eos_id());
  EXPECT_EQ(ours.pad_id(), ref.pad_id());
  EXPECT_EQ(ours.unk_id(), ref.unk_id());
  for (int id = 0; id < ours.vocab_size(); ++id) {
    ASSERT_EQ(ours.piece(id), ref.IdToPiece(id)) << id;
    ASSERT_EQ(ours.score(id), ref.GetScore(id)) << id;
    ASSERT_EQ(ours.piece_type(id) == PieceType::control, ref.IsControl(id)) << id;
    ASSERT_EQ(ours.piece_type(id) == PieceType::unknown, ref.IsUnknown(id)) << id;
    ASSERT_EQ(ours.piece_type(id) == PieceType::byte, ref.IsByte(id)) << id;
    ASSERT_EQ(ours.piece_type(id) == PieceType::unused, ref.IsUnused(id)) << id;
  }
}

// ---------------------------------------------------------------------------------
// A minimal protobuf writer for synthetic models (sentencepiece parses the same bytes).

struct ProtoWriter {
  std::string out;
  void varint(std::uint64_t v) {
    while (v >= 0x80) {
      out += static_cast<char>((v & 0x7F) | 0x80);
      v >>= 7;
    }
    out += static_cast<char>(v);
  }
  void key(int field, int wire) { varint(static_cast<std::uint64_t>(field) << 3 | wire); }
  void u(int field, std::uint64_t v) {
    key(field, 0);
    varint(v);
  }
  void bytes(int field, const std::string& v) {
    key(field, 2);
    varint(v.size());
    out += v;
  }
  void f32(int field, float v) {
    key(field, 5);
    char b[4];
    std::memcpy(b, &v, 4);
    out.append(b, 4);
  }
};

struct SyntheticPiece {
  std::string text;
  float score;
  int type;  // sentencepiece numbering: 1 normal .. 6 byte
};

struct SyntheticModel {
  std::vector<SyntheticPiece> pieces;
  int model_type = 2;
  bool byte_fallback = false;
  bool add_dummy_prefix = true, remove_extra_whitespaces = false, escape_whitespaces = true;
  std::string precompiled_charsmap;
  std::vector<std::pair<std::string, std::string>> self_test;

  std::string serialize() const {
    ProtoWriter m;
    for (const SyntheticPiece& p : pieces) {
      ProtoWriter w;
      w.bytes(1, p.text);
      w.f32(2, p.score);
      w.u(3, p.type);
      m.bytes(1, w.out);
    }
    ProtoWriter trainer;
    trainer.u(3, model_type);
    trainer.u(4, pieces.size());
    trainer.u(35, byte_fallback);
    trainer.u(40, 0);
    trainer.u(41, 1);
    trainer.u(42, 2);
    trainer.u(43, static_cast<std::uint64_t>(-1));  // pad_id -1: a 10-byte varint
    m.bytes(2, trainer.out);
    ProtoWriter normalizer;
    normalizer.bytes(1, precompiled_charsmap.empty() ? "identity" : "nmt_nfkc");
    if (!precompiled_charsmap.empty()) normalizer.bytes(2, precompiled_charsmap);
    normalizer.u(3, add_dummy_prefix);
    normalizer.u(4, remove_extra_whitespaces);
    normalizer.u(5, escape_whitespaces);
    m.bytes(3, normalizer.out);
    if (!self_test.empty()) {
      ProtoWriter data;
      for (const auto& [input, expected] : self_test) {
        ProtoWriter s;
        s.bytes(1, input);
        s.bytes(2, expected);
        data.bytes(1, s.out);
      }
      m.bytes(4, data.out);
    }
    return m.out;
  }
};

// The pieces of a real model as the reference reports them.
std::vector<SyntheticPiece> pieces_of(const Reference& ref) {
  std::vector<SyntheticPiece> pieces;
  for (int id = 0; id < ref.GetPieceSize(); ++id) {
    int type = 1;
    if (ref.IsUnknown(id)) type = 2;
    else if (ref.IsControl(id)) type = 3;
    else if (ref.IsUnused(id)) type = 5;
    else if (ref.IsByte(id)) type = 6;
    pieces.push_back({ref.IdToPiece(id), ref.GetScore(id), type});
  }
  return pieces;
}

// A variant of the stories260K vocabulary without byte pieces (unknown characters
// become <unk>, runs of them one <unk>), with user-defined pieces, every fifth
// multi-character piece UNUSED (merged, then split back), and scores rounded so that
// many merges tie (leftmost first).
SyntheticModel stories_variant(const Reference& stories) {
  SyntheticModel m;
  int normal = 0;
  for (SyntheticPiece p : pieces_of(stories)) {
    if (p.type == 6) continue;
    if (p.type == 1) {
      p.score = std::floor(p.score / 40.0f);
      if (p.text.size() > 2 && ++normal % 5 == 0) p.type = 5;
    }
    m.pieces.push_back(p);
  }
  for (const char* user : {"<image>", "\xF0\x9F\x99\x82", "::", "\n\n", "\xE2\x96\x81the\xE2\x96\x81"})
    m.pieces.push_back({user, 0.0f, 4});
  return m;
}

// ---------------------------------------------------------------------------------
// Exactness on the real models

TEST(Tokenizer, LlamaMatchesSentencepiece) {
  const Tokenizer ours = Tokenizer::load(llama_path());
  const auto ref = reference_from_file(llama_path());
  compare_vocabulary(ours, *ref);
  const std::size_t strings = compare_on_corpus(ours, *ref, "llama");
  const std::size_t sequences = compare_decode_random(ours, *ref, "llama", 7);
  std::printf("llama: %zu strings compared (%zu llama.cpp cases, %zu LLaVA texts, %zu generated), "
              "%zu random id sequences decoded\n",
              strings, corpus().llama_cpp.size(), corpus().llava.size(), corpus().generated.size(), sequences);
}

TEST(Tokenizer, Stories260KMatchesSentencepiece) {
  const Tokenizer ours = Tokenizer::load(stories_path());
  const auto ref = reference_from_file(stories_path());
  compare_vocabulary(ours, *ref);
  const std::size_t strings = compare_on_corpus(ours, *ref, "stories260K");
  const std::size_t sequences = compare_decode_random(ours, *ref, "stories260K", 8);
  std::printf("stories260K: %zu strings compared, %zu random id sequences decoded\n", strings, sequences);
}

TEST(Tokenizer, SyntheticVariantsMatchSentencepiece) {
  const auto stories = reference_from_file(stories_path());
  struct Variant {
    std::string label;
    SyntheticModel model;
  };
  std::vector<Variant> variants;
  variants.push_back({"no byte fallback, user-defined, unused, ties", stories_variant(*stories)});
  Variant extra{"+ remove_extra_whitespaces", stories_variant(*stories)};
  extra.model.remove_extra_whitespaces = true;
  variants.push_back(extra);
  Variant raw{"byte fallback, no dummy prefix, spaces not escaped", {}};
  raw.model.pieces = pieces_of(*stories);
  raw.model.pieces.push_back({"<image>", 0.0f, 4});
  raw.model.byte_fallback = true;
  raw.model.add_dummy_prefix = false;
  raw.model.escape_whitespaces = false;
  variants.push_back(raw);
  Variant all_off{"byte fallback, remove_extra_whitespaces, no dummy prefix", {}};
  all_off.model.pieces = pieces_of(*stories);
  all_off.model.byte_fallback = true;
  all_off.model.add_dummy_prefix = false;
  all_off.model.remove_extra_whitespaces = true;
  variants.push_back(all_off);
  std::size_t total = 0;
  for (const Variant& v : variants) {
    const std::string bytes = v.model.serialize();
    const auto ref = reference_from_bytes(bytes);
    ASSERT_TRUE(ref) << v.label << ": sentencepiece refuses the synthetic model";
    const Tokenizer ours = Tokenizer::from_bytes(bytes, "synthetic");
    compare_vocabulary(ours, *ref);
    total += compare_on_corpus(ours, *ref, v.label);
    compare_decode_random(ours, *ref, v.label, 9);
  }
  std::printf("synthetic variants: %zu strings compared\n", total);
}

TEST(Tokenizer, ProtobufFieldsMergeLikeProtobuf) {
  // A second normalizer_spec appended to the real LLaMA model merges into the first
  // (protobuf semantics): remove_extra_whitespaces on a 32000-piece vocabulary.
  ProtoWriter extra;
  ProtoWriter normalizer;
  normalizer.u(4, 1);
  extra.bytes(3, normalizer.out);
  const std::string bytes = test::read_file(llama_path()) + extra.out;
  const auto ref = reference_from_bytes(bytes);
  ASSERT_TRUE(ref);
  const Tokenizer ours = Tokenizer::from_bytes(bytes, "llama+remove_extra_whitespaces");
  EXPECT_EQ(ours.encode("  a  b  ", false), ref->EncodeAsIds("  a  b  "));
  compare_on_corpus(ours, *ref, "llama + remove_extra_whitespaces");
}

TEST(Tokenizer, SelfTestSamplesAreChecked) {
  const auto stories = reference_from_file(stories_path());
  SyntheticModel m = stories_variant(*stories);
  const auto plain = reference_from_bytes(m.serialize());
  ASSERT_TRUE(plain);
  std::string expected;
  for (const std::string& p : plain->EncodeAsPieces("Once upon a time")) expected += (expected.empty() ? "" : " ") + p;
  m.self_test = {{"Once upon a time", expected}};
  EXPECT_TRUE(reference_from_bytes(m.serialize()));
  EXPECT_NO_THROW(Tokenizer::from_bytes(m.serialize(), "good-self-test"));
  m.self_test = {{"Once upon a time", "\xE2\x96\x81Once"}};
  EXPECT_FALSE(reference_from_bytes(m.serialize()));
  try {
    Tokenizer::from_bytes(m.serialize(), "bad-self-test");
    ADD_FAILURE() << "a failing self-test sample was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("self-test"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------------------------
// Vocabulary and special ids

TEST(Tokenizer, LlamaPiecesAndSpecialIds) {
  const Tokenizer t = Tokenizer::load(llama_path());
  EXPECT_EQ(t.vocab_size(), 32000);
  EXPECT_EQ(t.unk_id(), 0);
  EXPECT_EQ(t.bos_id(), 1);
  EXPECT_EQ(t.eos_id(), 2);
  EXPECT_EQ(t.pad_id(), -1);
  EXPECT_EQ(t.piece(0), "<unk>");
  EXPECT_EQ(t.piece(1), "<s>");
  EXPECT_EQ(t.piece(2), "</s>");
  EXPECT_EQ(t.piece(3), "<0x00>");
  EXPECT_EQ(t.piece(13), "<0x0A>");
  EXPECT_EQ(t.piece_type(1), PieceType::control);
  EXPECT_EQ(t.piece_type(13), PieceType::byte);
  EXPECT_EQ(t.piece_type(29871), PieceType::normal);
  EXPECT_EQ(t.piece(29871), "\xE2\x96\x81");  // "▁"
  EXPECT_THROW(t.piece(-1), std::out_of_range);
  EXPECT_THROW(t.piece(32000), std::out_of_range);
  EXPECT_THROW(t.decode({1, 32000}), std::out_of_range);
  // The well-known LLaMA ids of "Hello world" (after BOS).
  EXPECT_EQ(t.encode("Hello world", true), (std::vector<std::int32_t>{1, 15043, 3186}));
  EXPECT_EQ(t.encode("", true), (std::vector<std::int32_t>{1}));
  EXPECT_EQ(t.encode("", false), (std::vector<std::int32_t>{}));
  EXPECT_EQ(t.decode({1, 15043, 3186, 2}), "Hello world");
  // A byte that is not UTF-8 becomes U+FFFD, which LLaMA has as a piece ("�", 30140);
  // byte fallback spells characters that are not pieces.
  EXPECT_EQ(t.piece(30140), "\xEF\xBF\xBD");
  EXPECT_EQ(t.encode("\xFF", false), (std::vector<std::int32_t>{29871, 30140}));
  EXPECT_EQ(t.encode("a\xC3", false), t.encode("a\xEF\xBF\xBD", false));
  EXPECT_EQ(t.decode(t.encode("\xF0\x9F\xA6\x99", false)), "\xF0\x9F\xA6\x99");  // 🦙 via <0xF0><0x9F><0xA6><0x99>
  EXPECT_EQ(t.decode({1, 242, 194}), "\xEF\xBF\xBD\xEF\xBF\xBD");  // a cut character: U+FFFD per byte
}

TEST(Tokenizer, Stories260KSpecialIds) {
  const Tokenizer t = Tokenizer::load(stories_path());
  EXPECT_EQ(t.vocab_size(), 512);
  EXPECT_EQ(t.bos_id(), 1);
  EXPECT_EQ(t.eos_id(), 2);
  EXPECT_EQ(t.unk_id(), 0);
  EXPECT_EQ(t.piece(1), "<s>");
  EXPECT_THROW(t.piece(512), std::out_of_range);
}

TEST(Tokenizer, MovedTokenizerStillWorks) {
  Tokenizer a = Tokenizer::load(stories_path());
  const auto before = a.encode("Once upon a time, there was a little girl named Lily.", true);
  Tokenizer b = std::move(a);
  EXPECT_EQ(b.encode("Once upon a time, there was a little girl named Lily.", true), before);
}

// ---------------------------------------------------------------------------------
// Speed: long LLaVA answers (about 2 KB each)

TEST(Tokenizer, EncodesLongAnswersFast) {
  const Tokenizer ours = Tokenizer::load(llama_path());
  const auto ref = reference_from_file(llama_path());
  std::string all;
  for (const std::string& t : corpus().llava) all += t + "\n";
  std::vector<std::string> chunks;
  for (std::size_t i = 0; i + 2048 <= all.size(); i += 2048) chunks.push_back(all.substr(i, 2048));
  ASSERT_GE(chunks.size(), 50u);
  auto time = [&](auto&& encode) {
    std::size_t tokens = 0;
    const auto start = std::chrono::steady_clock::now();
    for (int rep = 0; rep < 3; ++rep)
      for (const std::string& c : chunks) tokens += encode(c);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return std::make_pair(tokens, seconds);
  };
  const auto [ours_tokens, ours_s] = time([&](const std::string& c) { return ours.encode(c, true).size(); });
  const auto [ref_tokens, ref_s] = time([&](const std::string& c) { return ref->EncodeAsIds(c).size() + 1; });
  EXPECT_EQ(ours_tokens, ref_tokens);
  std::printf("encode speed on %zu x 2 KB LLaVA text: ours %.0f tokens/s (%.1f us per 2 KB), sentencepiece %.0f tokens/s\n",
              chunks.size(), ours_tokens / ours_s, 1e6 * ours_s / (3.0 * chunks.size()), ref_tokens / ref_s);
  // Generous bound (a debug build on a slow machine): a 2 KB answer in under 20 ms.
  EXPECT_LT(ours_s / (3.0 * chunks.size()), 0.020);
}

// ---------------------------------------------------------------------------------
// Malformed and unsupported model files

void expect_load_error(const std::string& path, const std::string& fragment) {
  try {
    Tokenizer::load(path);
    ADD_FAILURE() << path << " was accepted";
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(path), std::string::npos) << "message does not name the file: " << what;
    EXPECT_NE(what.find(fragment), std::string::npos) << "expected '" << fragment << "' in: " << what;
  }
}

TEST(Tokenizer, MalformedFilesAreRefusedNamingTheFile) {
  const std::string dir = test::scratch_dir("tokenizer-malformed");
  const std::string model = test::read_file(llama_path());
  expect_load_error(dir + "/absent.model", "cannot open");
  test::write_file(dir + "/empty.model", "");
  expect_load_error(dir + "/empty.model", "no pieces");
  // Truncated anywhere: a cut inside a field is malformed; a cut between fields
  // leaves a model without its trainer spec (UNIGRAM by default) or with missing
  // byte pieces - refused either way.
  for (std::size_t cut : {std::size_t{1}, std::size_t{2}, std::size_t{7}, std::size_t{100}, std::size_t{1000},
                          model.size() / 3, model.size() / 2, model.size() - 50, model.size() - 1}) {
    const std::string path = dir + "/truncated-" + std::to_string(cut) + ".model";
    test::write_file(path, model.substr(0, cut));
    expect_load_error(path, "");
  }
  test::write_file(dir + "/cut-in-piece.model", model.substr(0, 1000));
  expect_load_error(dir + "/cut-in-piece.model", "not a valid sentencepiece model");
  std::mt19937 rng(3);
  for (int n = 0; n < 20; ++n) {
    std::string garbage(std::uniform_int_distribution<int>(1, 5000)(rng), '\0');
    for (char& c : garbage) c = static_cast<char>(rng());
    const std::string path = dir + "/garbage-" + std::to_string(n) + ".model";
    test::write_file(path, garbage);
    expect_load_error(path, "");
  }
  test::write_file(dir + "/text.model", "this is not a tokenizer model\n");
  expect_load_error(dir + "/text.model", "");
  // A length that runs past the end of the file.
  ProtoWriter w;
  w.key(1, 2);
  w.varint(1u << 30);
  test::write_file(dir + "/long-length.model", w.out + "xyz");
  expect_load_error(dir + "/long-length.model", "claims 1073741824 bytes");
}

TEST(Tokenizer, UnsupportedModelsAreRefused) {
  const std::string dir = test::scratch_dir("tokenizer-unsupported");
  const auto stories = reference_from_file(stories_path());
  auto write = [&](const std::string& name, const SyntheticModel& m) {
    test::write_file(dir + "/" + name, m.serialize());
    return dir + "/" + name;
  };
  SyntheticModel unigram = stories_variant(*stories);
  unigram.model_type = 1;
  expect_load_error(write("unigram.model", unigram), "model type UNIGRAM is not supported");
  SyntheticModel nfkc = stories_variant(*stories);
  nfkc.precompiled_charsmap = std::string("\x04\x00\x00\x00\x00\x00\x00\x00x", 9);
  expect_load_error(write("nfkc.model", nfkc), "precompiled character map");
  SyntheticModel twice = stories_variant(*stories);
  twice.pieces.push_back(twice.pieces[10]);
  expect_load_error(write("twice.model", twice), "is defined twice");
  EXPECT_FALSE(reference_from_bytes(twice.serialize()));
  SyntheticModel no_unk = stories_variant(*stories);
  no_unk.pieces[0].type = 3;
  expect_load_error(write("no-unk.model", no_unk), "no unknown piece");
  SyntheticModel bytes_off;
  bytes_off.pieces = pieces_of(*stories);
  bytes_off.byte_fallback = false;
  expect_load_error(write("bytes-off.model", bytes_off), "byte_fallback is off");
  EXPECT_FALSE(reference_from_bytes(bytes_off.serialize()));
  SyntheticModel missing_byte;
  missing_byte.pieces = pieces_of(*stories);
  missing_byte.byte_fallback = true;
  missing_byte.pieces.erase(missing_byte.pieces.begin() + 3 + 0x41);
  expect_load_error(write("missing-byte.model", missing_byte), "<0x41> is missing");
  EXPECT_FALSE(reference_from_bytes(missing_byte.serialize()));
}

// ---------------------------------------------------------------------------------
// align2 tokenize

TEST(TokenizeCommand, WritesIdsPerLine) {
  const std::string dir = test::scratch_dir("tokenize-cli");
  const Tokenizer t = Tokenizer::load(llama_path());
  std::vector<std::string> texts = {"Hello world", "", "  two  spaces\tand a tab\n", "中文 😀 é", "<image>\nWhat is it?"};
  for (const std::string& s : corpus().llava)
    if (texts.size() < 200) texts.push_back(s);
  std::string input;
  for (const std::string& s : texts) input += json({{"text", s}}).dump() + "\n";
  test::write_file(dir + "/in.jsonl", input);
  for (bool bos : {true, false}) {
    auto r = test::run_command(test::align2_bin() + " tokenize --tokenizer " + llama_path() +
                               (bos ? "" : " --no-bos") + " --input " + dir + "/in.jsonl");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::istringstream out(r.out);
    std::size_t n = 0;
    for (std::string line; std::getline(out, line); ++n) {
      ASSERT_LT(n, texts.size());
      EXPECT_EQ(line.rfind("{\"ids\": [", 0), 0u) << line;
      EXPECT_EQ(json::parse(line), json({{"ids", t.encode(texts[n], bos)}})) << escaped(texts[n]);
    }
    EXPECT_EQ(n, texts.size());
  }
  auto r = test::run_command(test::align2_bin() + " tokenize --tokenizer " + llama_path() + " --input " + dir +
                             "/in.jsonl | head -n 1");
  EXPECT_EQ(r.out, "{\"ids\": [1, 15043, 3186]}\n");
}

TEST(TokenizeCommand, BadLinesAndFilesAreNamed) {
  const std::string dir = test::scratch_dir("tokenize-cli-bad");
  const std::string input = dir + "/in.jsonl";
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"{\"text\": \"ok\"}\n{oops\n", "line 2"},
      {"{\"text\": \"ok\"}\n\n{\"txt\": \"no text\"}\n", "line 3"},
      {"{\"text\": 5}\n", "line 1"},
      {"[\"text\"]\n", "line 1"},
  };
  for (const auto& [content, where] : bad) {
    test::write_file(input, content);
    auto r = test::run_command(test::align2_bin() + " tokenize --tokenizer " + llama_path() + " --input " + input);
    EXPECT_EQ(r.exit_code, 1) << content;
    EXPECT_NE(r.err.find(input), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(where), std::string::npos) << r.err;
  }
  auto r = test::run_command(test::align2_bin() + " tokenize --tokenizer " + dir + "/none.model --input " + input);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(dir + "/none.model"), std::string::npos) << r.err;
  r = test::run_command(test::align2_bin() + " tokenize --input " + input);
  EXPECT_EQ(r.exit_code, 2) << r.err;
}

}  // namespace
}  // namespace align2
