// Fuzz target: the safetensors header parser and the sharded-checkpoint index parser.
//   Input starting with '{': a model.safetensors.index.json, written into a checkpoint folder
//   that also holds two valid shards (written once per process; tensor names of the real
//   stories260K model); Checkpoint(folder) must load or refuse with std::runtime_error, and
//   every tensor it then lists must convert (to_float32) inside its mapped file.
//   Any other input: a .safetensors file; SafetensorsFile and Checkpoint(file) must load or
//   refuse it cleanly, and every tensor of a loaded file must be inside the data section,
//   of size numel * dtype_size, and convert to float32 without reading past the mapping.
// Seeds: test/fuzz/corpus/safetensors/ (real tensors and the real header of stories260K).
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/model/safetensors.h"
#include "test/fuzz/fuzz_common.h"

using namespace align2;
using align2::fuzz::expect_clean_errors;

namespace {

constexpr const char* kTarget = "safetensors";

// Converts every tensor; the checksum keeps the reads from being optimised away.
double touch_all(const std::map<std::string, TensorView>& tensors) {
  double sum = 0;
  for (const auto& [name, view] : tensors) {
    FUZZ_CHECK(kTarget, view.numel() >= 0, name);
    FUZZ_CHECK(kTarget, view.nbytes == static_cast<std::size_t>(view.numel()) * dtype_size(view.dtype),
               name + ": nbytes != numel * dtype_size");
    std::vector<float> out(static_cast<std::size_t>(view.numel()));
    to_float32(view, out.data());
    for (float f : out) sum += static_cast<double>(f == f ? f : 0.0f);
  }
  return sum;
}

const std::string& checkpoint_folder() {
  static const std::string folder = [] {
    const auto dir = align2::fuzz::scratch_dir() / "ckpt";
    std::filesystem::create_directories(dir);
    const std::vector<float> ones(64, 1.0f);
    write_safetensors((dir / "model-00001-of-00002.safetensors").string(),
                      {float_tensor("model.norm.weight", {64}, ones),
                       float_tensor("model.layers.0.input_layernorm.weight", {64}, ones)},
                      {{"format", "pt"}});
    write_safetensors((dir / "model-00002-of-00002.safetensors").string(),
                      {float_tensor("model.layers.0.post_attention_layernorm.weight", {64}, ones)},
                      {{"format", "pt"}});
    return dir.string();
  }();
  return folder;
}

void check_index(const std::uint8_t* data, std::size_t size) {
  const std::string& folder = checkpoint_folder();
  align2::fuzz::write_bytes(folder + "/model.safetensors.index.json", data, size);
  expect_clean_errors(kTarget, [&] {
    Checkpoint ckpt(folder);
    for (const std::string& name : ckpt.names()) {
      const TensorView& view = ckpt.get(name);
      FUZZ_CHECK(kTarget, view.name == name, name);
      std::vector<float> out(static_cast<std::size_t>(view.numel()));
      to_float32(view, out.data());
    }
  });
}

void check_file(const std::uint8_t* data, std::size_t size) {
  const auto path = (align2::fuzz::scratch_dir() / "model.safetensors").string();
  align2::fuzz::write_bytes(path, data, size);
  expect_clean_errors(kTarget, [&] {
    SafetensorsFile file(path);
    // Oracle: the header as the harness reads it (nlohmann). A loaded file must have had a
    // header of `header` bytes that is a JSON object, and every tensor view must point at exactly
    // the bytes [8 + header + begin, 8 + header + end) of the input, inside the file.
    FUZZ_CHECK(kTarget, size >= 8, "a file under 8 bytes loaded");
    std::uint64_t header = 0;
    std::memcpy(&header, data, 8);  // little-endian u64 (x86)
    FUZZ_CHECK(kTarget, header <= size - 8, "header past the end of the file");
    const nlohmann::json parsed =
        nlohmann::json::parse(data + 8, data + 8 + header, nullptr, /*allow_exceptions=*/false);
    FUZZ_CHECK(kTarget, parsed.is_object(), "a header that is not a JSON object loaded");
    const std::uint8_t* base = nullptr;  // the mapping's first byte, as the views imply it
    for (const auto& [name, view] : file.tensors()) {
      FUZZ_CHECK(kTarget, parsed.contains(name), name + ": not in the header");
      const auto& offsets = parsed[name]["data_offsets"];
      const std::uint64_t begin = offsets.at(0).get<std::uint64_t>(), end = offsets.at(1).get<std::uint64_t>();
      FUZZ_CHECK(kTarget, begin <= end && end - begin == view.nbytes, name + ": data_offsets vs nbytes");
      FUZZ_CHECK(kTarget, end <= size - 8 - header, name + ": data past the end of the file");
      const std::uint8_t* implied = view.data - (8 + header + begin);
      if (!base) base = implied;
      FUZZ_CHECK(kTarget, implied == base, name + ": views disagree on the mapping");
      FUZZ_CHECK(kTarget, view.nbytes == 0 || std::memcmp(view.data, data + 8 + header + begin, view.nbytes) == 0,
                 name + ": view bytes differ from the file's");
    }
    touch_all(file.tensors());
  });
  expect_clean_errors(kTarget, [&] {
    Checkpoint ckpt(path);
    for (const std::string& name : ckpt.names()) FUZZ_CHECK(kTarget, ckpt.has(name), name);
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 0 && data[0] == '{')
    check_index(data, size);
  else
    check_file(data, size);
  return 0;
}
