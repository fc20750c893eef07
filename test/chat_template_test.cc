// LLaVA conversation templates (core/model/chat_template.h): expected strings written out by
// hand from LLaVA @ c121f04 (conversation.py get_prompt, train.py
// preprocess_multimodal / preprocess_plain), the 100 real LLaVA-Instruct records, and
// the `align2 prompt` command.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "core/model/chat_template.h"
#include "core/data/corpus_index.h"
#include "core/data/corpus_reader.h"
#include "test/test_support.h"

namespace align2 {
namespace {

using nlohmann::json;

const std::string kVicuna =
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions.";
const std::string kLlavaV1 =
    "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the human's questions.";

std::size_t count(const std::string& haystack, const std::string& needle) {
  std::size_t n = 0;
  for (std::size_t pos = haystack.find(needle); pos != std::string::npos; pos = haystack.find(needle, pos + 1)) ++n;
  return n;
}

// ---------------------------------------------------------------------------------
// Hand-written expectations

TEST(ChatTemplate, OneTurnTagClosingTheQuestion) {
  const std::vector<Turn> turns = {{"What is in the picture?\n<image>", "A cat on a sofa."}};
  EXPECT_EQ(render_training(TemplateKind::vicuna_v1, turns, true),
            kVicuna + " USER: <image>\nWhat is in the picture? ASSISTANT: A cat on a sofa.</s>");
  EXPECT_EQ(render_inference(TemplateKind::vicuna_v1, {}, turns[0].question, true),
            kVicuna + " USER: <image>\nWhat is in the picture? ASSISTANT:");
  EXPECT_EQ(render_training(TemplateKind::llava_v1, turns, true),
            kLlavaV1 + " USER: <image>\nWhat is in the picture? ASSISTANT: A cat on a sofa.</s>");
}

TEST(ChatTemplate, TwoTurnsTagOpeningTheQuestion) {
  const std::vector<Turn> turns = {{"<image>\nWhat color is the bus?", "The bus is red."},
                                   {"Where is it going?", "It is heading to the station."}};
  EXPECT_EQ(render_training(TemplateKind::vicuna_v1, turns, true),
            kVicuna +
                " USER: <image>\nWhat color is the bus? ASSISTANT: The bus is red.</s>"
                "USER: Where is it going? ASSISTANT: It is heading to the station.</s>");
  EXPECT_EQ(render_inference(TemplateKind::vicuna_v1, {turns[0]}, turns[1].question, true),
            kVicuna +
                " USER: <image>\nWhat color is the bus? ASSISTANT: The bus is red.</s>"
                "USER: Where is it going? ASSISTANT:");
  EXPECT_EQ(render_inference(TemplateKind::llava_v1, {turns[0]}, turns[1].question, true),
            kLlavaV1 +
                " USER: <image>\nWhat color is the bus? ASSISTANT: The bus is red.</s>"
                "USER: Where is it going? ASSISTANT:");
}

TEST(ChatTemplate, TextOnlyLeavesTextAlone) {
  const std::vector<Turn> turns = {{"  Tell me a joke.\n", "Why did the chicken cross the road?"},
                                   {"Why?", "To get to the other side."}};
  EXPECT_EQ(render_training(TemplateKind::llava_v1, turns, false),
            kLlavaV1 +
                " USER:   Tell me a joke.\n ASSISTANT: Why did the chicken cross the road?</s>"
                "USER: Why? ASSISTANT: To get to the other side.</s>");
  EXPECT_EQ(render_inference(TemplateKind::vicuna_v1, {}, "Hi", false), kVicuna + " USER: Hi ASSISTANT:");
}

TEST(ChatTemplate, PlainTemplate) {
  // preprocess_plain: the question becomes the bare tag; answer + sep "\n".
  EXPECT_EQ(render_training(TemplateKind::plain, {{"Describe the image briefly.\n<image>", "A dog on a beach."}}, true),
            "<image>A dog on a beach.\n");
  // get_prompt, PLAIN, last message None: message + "\n".
  EXPECT_EQ(render_inference(TemplateKind::plain, {}, "Describe the image briefly.\n<image>", true),
            "<image>\nDescribe the image briefly.\n");
  EXPECT_EQ(render_inference(TemplateKind::plain, {}, "Hello", false), "Hello\n");
  EXPECT_THROW(render_training(TemplateKind::plain, {{"<image>\nq", "a"}, {"q2", "a2"}}, true), std::invalid_argument);
  EXPECT_THROW(render_training(TemplateKind::plain, {{"q", "a"}}, false), std::invalid_argument);
  EXPECT_THROW(render_inference(TemplateKind::plain, {{"<image>\nq", "a"}}, "q2", true), std::invalid_argument);
}

TEST(ChatTemplate, ImageTagMoveFollowsPreprocessMultimodal) {
  EXPECT_EQ(move_image_tag("What is this?\n<image>"), "<image>\nWhat is this?");
  EXPECT_EQ(move_image_tag("<image>\nWhat is this?"), "<image>\nWhat is this?");
  EXPECT_EQ(move_image_tag("What <image> is this?"), "<image>\nWhat  is this?");  // only the tag goes
  EXPECT_EQ(move_image_tag("<image>"), "<image>");                                // the second strip
  EXPECT_EQ(move_image_tag(" \t<image>\n\n"), "<image>");
  // Python's strip is Unicode-aware: U+3000, U+00A0, U+2028 go; U+200B (not a space) stays.
  EXPECT_EQ(move_image_tag("\u3000\u00a0Q?\u2028<image>"), "<image>\nQ?");
  EXPECT_EQ(move_image_tag("\u200bQ?<image>"), "<image>\n\u200bQ?");
  EXPECT_EQ(move_image_tag("no tag  "), "no tag  ");
  EXPECT_EQ(python_strip("\x1c\x1f x \u0085"), "x");
  EXPECT_EQ(python_strip("x \x85"), "x \x85");  // a stray byte is not U+0085
  EXPECT_EQ(python_strip("   "), "");
  EXPECT_EQ(python_strip("\xE4\xB8\xAD "), "\xE4\xB8\xAD");
}

TEST(ChatTemplate, EmptyMessagesRenderAsBareRoles) {
  // get_prompt: `if message:` is false for "", which renders "ROLE:" without separator.
  EXPECT_EQ(render_training(TemplateKind::vicuna_v1, {{"q", ""}, {"", "a"}}, false),
            kVicuna + " USER: q ASSISTANT:USER:ASSISTANT: a</s>");
}

TEST(ChatTemplate, NamesAndErrors) {
  EXPECT_EQ(template_from_name("vicuna_v1"), TemplateKind::vicuna_v1);
  EXPECT_EQ(template_from_name("llava_v1"), TemplateKind::llava_v1);
  EXPECT_EQ(template_from_name("plain"), TemplateKind::plain);
  EXPECT_STREQ(template_name(TemplateKind::llava_v1), "llava_v1");
  try {
    template_from_name("v1");
    ADD_FAILURE() << "v1 accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("vicuna_v1, llava_v1, plain"), std::string::npos) << e.what();
  }
  EXPECT_THROW(render_training(TemplateKind::vicuna_v1, {}, false), std::invalid_argument);
  EXPECT_THROW(render_training(TemplateKind::vicuna_v1, {{"no tag", "a"}}, true), std::invalid_argument);
}

// ---------------------------------------------------------------------------------
// The real LLaVA-Instruct records

std::vector<Sample> read_pool(const std::string& path) {
  const PoolIndex index = build_index({PoolFile{path, ""}}, IndexOptions{});
  CorpusReader reader(index);
  return reader.read(0, index.entries.size());
}

TEST(ChatTemplate, RealRecordsKeepEveryTurnAndOneLeadingImage) {
  std::size_t checked = 0;
  for (const char* file : {"data/llava/llava_instruct_60.json", "data/llava/llava_instruct_40b.json"}) {
    for (const Sample& s : read_pool(test::shared_path(file))) {
      ASSERT_EQ(s.status, Status::valid) << s.message;
      ASSERT_FALSE(s.image.empty());
      for (TemplateKind kind : {TemplateKind::vicuna_v1, TemplateKind::llava_v1}) {
        const std::string system = kind == TemplateKind::vicuna_v1 ? kVicuna : kLlavaV1;
        const std::string training = render_training(kind, s.turns, true);
        const std::vector<Turn> before(s.turns.begin(), s.turns.end() - 1);
        const std::string inference = render_inference(kind, before, s.turns.back().question, true);
        for (const std::string& prompt : {training, inference}) {
          EXPECT_EQ(prompt.rfind(system + " USER: <image>\n", 0), 0u) << s.id;
          EXPECT_EQ(count(prompt, "<image>"), 1u) << s.id;
          EXPECT_EQ(count(prompt, "<image>\n"), 1u) << s.id;
        }
        for (std::size_t t = 0; t < s.turns.size(); ++t) {
          const std::string question = t == 0 ? move_image_tag(s.turns[t].question) : s.turns[t].question;
          EXPECT_NE(training.find("USER: " + question + " ASSISTANT: " + s.turns[t].answer + "</s>"), std::string::npos)
              << s.id << " turn " << t;
          EXPECT_NE(inference.find(question), std::string::npos) << s.id << " turn " << t;
          if (t + 1 < s.turns.size()) {
            EXPECT_NE(inference.find(s.turns[t].answer), std::string::npos) << s.id;
          }
        }
        // The text of the original first question, without the tag, survives intact.
        std::string first = s.turns[0].question;
        first.erase(first.find("<image>"), 7);
        EXPECT_NE(training.find(python_strip(first)), std::string::npos) << s.id;
        EXPECT_EQ(count(training, "</s>"), s.turns.size()) << s.id;
        EXPECT_EQ(count(inference, "</s>"), s.turns.size() - 1) << s.id;
        // Generating the last answer continues exactly the training text.
        EXPECT_EQ(training.rfind(inference, 0), 0u) << s.id;
        EXPECT_EQ(training, inference + " " + s.turns.back().answer + "</s>") << s.id;
        EXPECT_EQ(inference.substr(inference.size() - 10), "ASSISTANT:") << s.id;
      }
      ++checked;
    }
  }
  EXPECT_EQ(checked, 100u);
}

// ---------------------------------------------------------------------------------
// align2 prompt

std::vector<json> json_lines(const std::string& out) {
  std::vector<json> lines;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) lines.push_back(json::parse(line));
  return lines;
}

TEST(PromptCommand, RendersEveryRealRecord) {
  const std::string pool = test::shared_path("data/llava/llava_instruct_60.json");
  const std::vector<Sample> samples = read_pool(pool);
  ASSERT_EQ(samples.size(), 60u);
  for (const char* name : {"vicuna_v1", "llava_v1"}) {
    for (bool inference : {false, true}) {
      auto r = test::run_command(test::align2_bin() + " prompt --template " + name + (inference ? " --inference" : "") +
                                 " --input " + pool);
      ASSERT_EQ(r.exit_code, 0) << r.err;
      const std::vector<json> lines = json_lines(r.out);
      ASSERT_EQ(lines.size(), samples.size());
      for (std::size_t i = 0; i < lines.size(); ++i) {
        const Sample& s = samples[i];
        const TemplateKind kind = template_from_name(name);
        const std::vector<Turn> before(s.turns.begin(), s.turns.end() - 1);
        const std::string expected = inference ? render_inference(kind, before, s.turns.back().question, true)
                                               : render_training(kind, s.turns, true);
        EXPECT_EQ(lines[i], json({{"id", s.id}, {"prompt", expected}}));
      }
    }
  }
  // The documented line form: {"id": ..., "prompt": ...}.
  auto r = test::run_command(test::align2_bin() + " prompt --template vicuna_v1 --input " + pool + " | head -n 1");
  EXPECT_EQ(r.out.rfind("{\"id\":\"000000379143\",\"prompt\":\"" + kVicuna + " USER: <image>\\nWhat is the man doing", 0),
            0u)
      << r.out;
}

TEST(PromptCommand, InvalidAndUnrenderableRecordsAreKept) {
  const std::string dir = test::scratch_dir("prompt-cli");
  const std::string pool = dir + "/pool.jsonl";
  test::write_file(
      pool,
      R"({"id": "one", "image": "a.jpg", "conversations": [{"from": "human", "value": "Q?\n<image>"}, {"from": "gpt", "value": "A."}]})"
      "\n{oops\n"
      R"({"id": "two", "image": "b.jpg", "conversations": [{"from": "human", "value": "<image>\nQ1"}, {"from": "gpt", "value": "A1"}, {"from": "human", "value": "Q2"}, {"from": "gpt", "value": "A2"}]})"
      "\n"
      R"({"id": "text", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]})"
      "\n");
  auto r = test::run_command(test::align2_bin() + " prompt --template plain --input " + pool);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<json> lines = json_lines(r.out);
  ASSERT_EQ(lines.size(), 4u) << r.out;
  EXPECT_EQ(lines[0], json({{"id", "one"}, {"prompt", "<image>A.\n"}}));
  EXPECT_EQ(lines[1]["status"], "invalid");
  EXPECT_EQ(lines[1]["reason"], "not_json");
  EXPECT_NE(lines[1]["message"].get<std::string>().find(pool), std::string::npos);
  EXPECT_EQ(lines[2]["id"], "two");
  EXPECT_EQ(lines[2]["status"], "unrenderable");
  EXPECT_EQ(lines[2]["reason"], "template");
  EXPECT_NE(lines[2]["message"].get<std::string>().find("exactly one turn"), std::string::npos) << lines[2];
  EXPECT_EQ(lines[3]["status"], "unrenderable");
  r = test::run_command(test::align2_bin() + " prompt --template vicuna_v1 --inference --input " + pool);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<json> v = json_lines(r.out);
  ASSERT_EQ(v.size(), 4u);
  EXPECT_EQ(v[0]["prompt"], kVicuna + " USER: <image>\nQ? ASSISTANT:");
  EXPECT_EQ(v[2]["prompt"], kVicuna + " USER: <image>\nQ1 ASSISTANT: A1</s>USER: Q2 ASSISTANT:");
  EXPECT_EQ(v[3]["prompt"], kVicuna + " USER: Hi ASSISTANT:");
  r = test::run_command(test::align2_bin() + " prompt --template v2 --input " + pool);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("vicuna_v1, llava_v1, plain"), std::string::npos) << r.err;
}

// An evaluation set (LLaVA-Bench's questions.jsonl as LLaVA records): one human turn each, or
// earlier turns and a last question without its answer. --inference renders the prompt that
// answers it, as conversation.py does with an empty assistant message; without --inference
// such a record stays invalid (bad_roles), since training and curation need the answer.
TEST(PromptCommand, QuestionOnlyRecordsRenderTheirInferencePrompt) {
  const std::string dir = test::scratch_dir("prompt-question-only");
  const std::string pool = dir + "/questions.jsonl";
  test::write_file(
      pool,
      R"({"id": 0, "image": "001.jpg", "conversations": [{"from": "human", "value": "<image>\nWhat is unusual about this image?"}]})"
      "\n"
      R"({"id": 1, "image": "002.jpg", "conversations": [{"from": "human", "value": "<image>\nQ1"}, {"from": "gpt", "value": "A1"}, {"from": "human", "value": "Q2"}]})"
      "\n"
      R"({"id": 2, "conversations": [{"from": "human", "value": "Hi"}]})"
      "\n"
      R"({"id": 3, "conversations": [{"from": "gpt", "value": "A"}]})"
      "\n");
  auto r = test::run_command(test::align2_bin() + " prompt --template vicuna_v1 --inference --input " + pool);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<json> v = json_lines(r.out);
  ASSERT_EQ(v.size(), 4u) << r.out;
  EXPECT_EQ(v[0], json({{"id", "0"}, {"prompt", kVicuna + " USER: <image>\nWhat is unusual about this image? ASSISTANT:"}}));
  EXPECT_EQ(v[1]["prompt"], kVicuna + " USER: <image>\nQ1 ASSISTANT: A1</s>USER: Q2 ASSISTANT:");
  EXPECT_EQ(v[2]["prompt"], kVicuna + " USER: Hi ASSISTANT:");
  EXPECT_EQ(v[3]["reason"], "bad_roles");  // roles must still start with human
  r = test::run_command(test::align2_bin() + " prompt --template llava_v1 --inference --input " + pool);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json_lines(r.out)[0]["prompt"], kLlavaV1 + " USER: <image>\nWhat is unusual about this image? ASSISTANT:");
  // The training form needs every answer.
  r = test::run_command(test::align2_bin() + " prompt --template vicuna_v1 --input " + pool);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<json> t = json_lines(r.out);
  ASSERT_EQ(t.size(), 4u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(t[std::size_t(i)]["reason"], "bad_roles") << t[std::size_t(i)];
}

}  // namespace
}  // namespace align2
