// LLaVA conversation templates, rendered exactly as LLaVA does (haotian-liu/LLaVA @
// c121f04: llava/conversation.py get_prompt, llava/train/train.py
// preprocess_multimodal / preprocess_v1 / preprocess_plain).
//
//   vicuna_v1  system "A chat between a curious user and an artificial intelligence
//              assistant. The assistant gives helpful, detailed, and polite answers to
//              the user's questions." then, per turn, "USER: q ASSISTANT: a</s>"
//              (SeparatorStyle.TWO: sep " " after the system text and after each
//              question, sep2 "</s>" after each answer; roles USER / ASSISTANT).
//   llava_v1   the same, but the system text says "human" where vicuna_v1 says "user":
//              "A chat between a curious human and an artificial intelligence
//              assistant. The assistant gives helpful, detailed, and polite answers to
//              the human's questions."
//   plain      LLaVA's pretraining form (SeparatorStyle.PLAIN, no system text, no
//              roles, sep "\n", sep2 None). Training (preprocess_plain): exactly one
//              turn with an image; the question is replaced by the bare tag:
//              "<image>" + answer + "\n". Inference (get_prompt): question + "\n"; with
//              answers before it get_prompt fails in LLaVA (sep2 is None), so it is
//              refused here.
//
// Two forms: training (every answer present, as get_prompt renders a full
// conversation) and inference (the last assistant message is None, so the prompt
// ends in "ASSISTANT:" with no space after the colon).
//
// get_prompt renders a message only when it is non-empty (Python truthiness): an empty
// message becomes "ROLE:" without separator, which is reproduced here.
//
// The image tag: when the record has an image, every message holding "<image>" is
// rewritten as LLaVA training's preprocess_multimodal does: remove every "<image>",
// strip (Python str.strip: Unicode whitespace), prepend "<image>\n", strip again (which
// only matters when nothing else is left: the message becomes "<image>"). So
// "What is this?\n<image>" and "<image>\nWhat is this?" both become
// "<image>\nWhat is this?". Both forms apply it. conversation.py itself moves the tag
// only for tuple messages (text, image, mode) as the Gradio demo builds them, with the
// same result except for the final strip; it leaves text messages untouched, and
// LLaVA's eval scripts instead prepend "<image>\n" to a tag-free question - the same
// text this rewrite gives. With the rewrite in both forms, the inference prompt for a
// conversation's last answer is a prefix of its training form (vicuna_v1, llava_v1).
// Without an image, text is left as it is. mm_use_im_start_end (off in LLaVA-1.5) and
// the mmtag templates are not implemented.
#pragma once

#include <string>
#include <vector>

#include "core/data/record_text.h"  // python_strip, the <image> tag
#include "core/data/sample.h"

namespace align2 {

enum class TemplateKind { vicuna_v1, llava_v1, plain };

// "vicuna_v1", "llava_v1", "plain" -> kind; std::invalid_argument listing the valid
// names otherwise.
TemplateKind template_from_name(const std::string& name);
const char* template_name(TemplateKind kind);

// The whole conversation with every answer. Throws std::invalid_argument when `turns`
// is empty, when `has_image` but no message holds "<image>", and for plain unless
// there is exactly one turn and an image.
std::string render_training(TemplateKind kind, const std::vector<Turn>& turns, bool has_image);

// The prompt from which the model generates the answer to `question`, after the
// complete turns `turns_before`: ends in "ASSISTANT:" (vicuna_v1, llava_v1) or "\n"
// (plain, which takes no turns before). Throws std::invalid_argument as above.
std::string render_inference(TemplateKind kind, const std::vector<Turn>& turns_before, const std::string& question,
                             bool has_image);

// preprocess_multimodal on one message: "<image>" moved to the front as "<image>\n"
// (see above); the message unchanged when it has no tag.
std::string move_image_tag(const std::string& message);


}  // namespace align2
