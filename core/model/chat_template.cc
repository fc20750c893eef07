#include "core/model/chat_template.h"

#include <fmt/format.h>

#include <cstdint>
#include <stdexcept>

namespace align2 {
namespace {

constexpr const char* kVicunaSystem =
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions.";
constexpr const char* kLlavaV1System =
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions.";

bool contains_tag(const std::string& s) { return count_image_tags(s) != 0; }

// The messages of a conversation: (role 0 = human / 1 = assistant implied by position),
// "" for a message that is None or empty (get_prompt treats both alike).
std::vector<std::string> messages_of(const std::vector<Turn>& turns) {
  std::vector<std::string> m;
  for (const Turn& t : turns) {
    m.push_back(t.question);
    m.push_back(t.answer);
  }
  return m;
}

// preprocess_multimodal over the messages of a record with an image.
void apply_image_rule(std::vector<std::string>* messages, bool has_image) {
  if (!has_image) return;
  bool found = false;
  for (std::string& m : *messages) {
    if (!contains_tag(m)) continue;
    m = move_image_tag(m);
    found = true;
  }
  if (!found) throw std::invalid_argument("the record has an image but no message holds the <image> tag");
}

// get_prompt for SeparatorStyle.TWO (vicuna_v1, llava_v1). messages[i] is from USER
// for even i, ASSISTANT for odd i; "" renders as "ROLE:".
std::string render_two(const char* system, const std::vector<std::string>& messages) {
  static const char* const kRoles[2] = {"USER", "ASSISTANT"};
  static const char* const kSeps[2] = {" ", "</s>"};
  std::string out = std::string(system) + kSeps[0];
  for (std::size_t i = 0; i < messages.size(); ++i) {
    out += kRoles[i % 2];
    if (messages[i].empty()) {
      out += ":";
    } else {
      out += ": ";
      out += messages[i];
      out += kSeps[i % 2];
    }
  }
  return out;
}

const char* system_of(TemplateKind kind) { return kind == TemplateKind::llava_v1 ? kLlavaV1System : kVicunaSystem; }

}  // namespace

TemplateKind template_from_name(const std::string& name) {
  if (name == "vicuna_v1") return TemplateKind::vicuna_v1;
  if (name == "llava_v1") return TemplateKind::llava_v1;
  if (name == "plain") return TemplateKind::plain;
  throw std::invalid_argument(
      fmt::format("unknown conversation template '{}' (valid: vicuna_v1, llava_v1, plain)", name));
}

const char* template_name(TemplateKind kind) {
  switch (kind) {
    case TemplateKind::vicuna_v1: return "vicuna_v1";
    case TemplateKind::llava_v1: return "llava_v1";
    case TemplateKind::plain: return "plain";
  }
  return "?";
}


std::string move_image_tag(const std::string& message) {
  if (!contains_tag(message)) return message;
  std::string without;
  const std::string tag(kImageTag);
  for (std::size_t pos = 0;;) {
    const std::size_t hit = message.find(tag, pos);
    if (hit == std::string::npos) {
      without.append(message, pos, std::string::npos);
      break;
    }
    without.append(message, pos, hit - pos);
    pos = hit + tag.size();
  }
  return python_strip(tag + "\n" + python_strip(without));
}

std::string render_training(TemplateKind kind, const std::vector<Turn>& turns, bool has_image) {
  if (turns.empty()) throw std::invalid_argument("a conversation needs at least one turn");
  std::vector<std::string> messages = messages_of(turns);
  apply_image_rule(&messages, has_image);
  if (kind == TemplateKind::plain) {
    // preprocess_plain: asserts two messages and the tag in the first, then replaces
    // the question by the bare tag.
    if (turns.size() != 1)
      throw std::invalid_argument(
          fmt::format("the plain template takes exactly one turn (LLaVA pretraining pairs), not {}", turns.size()));
    if (!has_image) throw std::invalid_argument("the plain template needs a record with an image");
    return std::string(kImageTag) + messages[1] + "\n";
  }
  return render_two(system_of(kind), messages);
}

std::string render_inference(TemplateKind kind, const std::vector<Turn>& turns_before, const std::string& question,
                             bool has_image) {
  std::vector<std::string> messages = messages_of(turns_before);
  messages.push_back(question);
  apply_image_rule(&messages, has_image);
  if (kind == TemplateKind::plain) {
    // get_prompt, PLAIN: message + sep for the question, nothing for the None answer;
    // an answer before it would meet sep2 = None (a TypeError in LLaVA).
    if (!turns_before.empty())
      throw std::invalid_argument("the plain template renders a single question: it takes no turns before it");
    return messages[0].empty() ? std::string() : messages[0] + "\n";
  }
  messages.push_back("");  // the assistant's answer, None
  return render_two(system_of(kind), messages);
}

}  // namespace align2
