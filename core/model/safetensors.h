// safetensors checkpoints, as users download them from the Hugging Face hub: one
// `model.safetensors`, or shards listed by `model.safetensors.index.json`. Files are
// memory-mapped; every size and offset in a header is checked against the file length
// before use. Only safetensors is loaded: pickle checkpoints (.bin, .pt, .pth, .ckpt)
// are refused with a message explaining how to convert them.
// Torch-free: tensors are raw little-endian bytes with a dtype and a shape.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace align2 {

enum class DType : std::uint8_t { f32, f16, bf16, i64, i32, u8 };
const char* dtype_name(DType d);          // "F32", "F16", "BF16", "I64", "I32", "U8" (safetensors spelling)
std::size_t dtype_size(DType d);          // bytes per element

// A tensor inside a mapped file (or an owned buffer): valid while its file lives.
struct TensorView {
  std::string name;
  DType dtype = DType::f32;
  std::vector<std::int64_t> shape;
  const std::uint8_t* data = nullptr;  // little-endian elements, row-major; NOT aligned in general
                                       // (offsets in a file are arbitrary): read through memcpy
  std::size_t nbytes = 0;              // = numel * dtype_size
  std::int64_t numel() const;
};

// One mapped .safetensors file (RAII owner of the mapping).
class SafetensorsFile {
 public:
  // Throws std::runtime_error naming the path on: not a file, too small, header length
  // beyond the file or above 100 MB, header not JSON, unknown dtype, shape/offset
  // inconsistent (end-begin != numel*size, overlapping, past the data section).
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }  // "__metadata__"
  // Hands the mapped pages of `view`'s bytes back to the kernel (madvise MADV_DONTNEED on
  // the whole pages it covers): once a loader has copied or converted a tensor, its source no
  // longer counts in this process's memory. The view stays valid (a later read faults the
  // pages in from the file again). False when `view` does not lie in this file's mapping.
  bool release(const TensorView& view) const;

 private:
  std::string path_;
  void* map_ = nullptr;
  std::size_t map_size_ = 0;
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

// All tensors of a checkpoint folder or file: model.safetensors, or the shards named by
// model.safetensors.index.json (each shard mapped once), or a single given .safetensors.
// Folder lookup order: model.safetensors.index.json, then model.safetensors. Shard names
// in an index must be plain file names in the folder (no "/", no ".."); every tensor of
// the weight_map must be in its shard, and no tensor may be in two shards. The index file
// itself may also be given as `path`.
class Checkpoint {
 public:
  // `path`: a folder or a .safetensors file. Throws std::runtime_error when the folder
  // holds only pickle weights (pytorch_model.bin, *.pt, ...) with a conversion hint,
  // when the index names missing shards or tensors the shard lacks, or any file error.
  explicit Checkpoint(const std::string& path);

  bool has(const std::string& name) const;
  // Throws std::runtime_error "<checkpoint>: tensor NAME is missing" when absent.
  const TensorView& get(const std::string& name) const;
  // get() plus a shape check: "<checkpoint>: tensor NAME has shape [a, b], expected [c, d]".
  const TensorView& get(const std::string& name, const std::vector<std::int64_t>& shape) const;
  std::vector<std::string> names() const;  // sorted
  // SafetensorsFile::release for the tensor NAME (in whichever shard holds it); no-op when absent.
  void release(const std::string& name) const;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*> index_;
};

// Element conversion of a whole tensor to float32 (F32/F16/BF16 exactly; integer
// dtypes as values). `out` has view.numel() floats.
void to_float32(const TensorView& view, float* out);

// A tensor to write: raw little-endian bytes.
struct TensorData {
  std::string name;
  DType dtype = DType::f32;
  std::vector<std::int64_t> shape;
  std::vector<std::uint8_t> bytes;
};

// Writes a .safetensors file (tensors sorted by name, 8-byte aligned header) through a
// temporary file and a rename. Throws std::runtime_error naming the path on failure.
void write_safetensors(const std::string& path, const std::vector<TensorData>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Convenience: float32 data of `shape` (row-major).
TensorData float_tensor(const std::string& name, std::vector<std::int64_t> shape, const std::vector<float>& values);

}  // namespace align2
