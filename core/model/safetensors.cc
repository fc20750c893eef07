#include "core/model/safetensors.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <stdexcept>

namespace align2 {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr std::uint64_t kMaxHeaderBytes = 100ull << 20;  // safetensors' own limit is 100 MB
constexpr std::uint64_t kMaxIndexBytes = 64ull << 20;    // model.safetensors.index.json

std::string errno_text() { return std::strerror(errno); }

// "[a, b, c]" for messages.
std::string shape_text(const std::vector<std::int64_t>& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

bool parse_dtype(const std::string& s, DType* out) {
  static const std::pair<const char*, DType> table[] = {
      {"F32", DType::f32}, {"F16", DType::f16}, {"BF16", DType::bf16},
      {"I64", DType::i64}, {"I32", DType::i32}, {"U8", DType::u8},
  };
  for (const auto& [name, d] : table)
    if (s == name) {
      *out = d;
      return true;
    }
  return false;
}

// A non-negative JSON integer (nlohmann parses those as number_unsigned).
bool as_u64(const json& v, std::uint64_t* out) {
  if (!v.is_number_unsigned()) return false;
  *out = v.get<std::uint64_t>();
  return true;
}

// Reads a whole small file (an index), refusing anything above `limit` bytes.
std::string read_small_file(const std::string& path, std::uint64_t limit) {
  std::error_code ec;
  std::uintmax_t size = fs::file_size(path, ec);
  if (ec) throw std::runtime_error(fmt::format("{}: cannot read: {}", path, ec.message()));
  if (size > limit) throw std::runtime_error(fmt::format("{}: {} bytes, above the {} byte limit", path, size, limit));
  std::ifstream in(path, std::ios::binary);
  std::string text(static_cast<std::size_t>(size), '\0');
  if (!in || !in.read(text.data(), static_cast<std::streamsize>(size)))
    throw std::runtime_error(fmt::format("{}: cannot read", path));
  return text;
}

bool has_pickle_extension(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".bin" || ext == ".pt" || ext == ".pth" || ext == ".ckpt" || ext == ".pkl" || ext == ".pickle";
}

// The refusal of pickle weights, with how to convert them once in a trusted Python.
[[noreturn]] void refuse_pickle(const std::string& where, const std::string& found) {
  throw std::runtime_error(fmt::format(
      "{}: only pickle weights found ({}). align2 loads only safetensors checkpoints: pickle files "
      "(.bin, .pt, .pth, .ckpt) can run arbitrary code when they are loaded. Convert them once, in a "
      "Python environment you trust, in the checkpoint folder:\n"
      "  python -c \"import torch; from safetensors.torch import save_file; "
      "save_file(torch.load('pytorch_model.bin', weights_only=True), 'model.safetensors')\"\n"
      "for shards (pytorch_model-00001-of-0000N.bin ...) merge them into one file:\n"
      "  python -c \"import glob, torch; from safetensors.torch import save_file; sd = {{}}; "
      "[sd.update(torch.load(f, weights_only=True)) for f in sorted(glob.glob('pytorch_model*.bin'))]; "
      "save_file(sd, 'model.safetensors')\"\n"
      "or, for models transformers can load, model.save_pretrained(out_dir, safe_serialization=True). "
      "LLaVA's projector-only mm_projector.bin must be converted the same way.",
      where, found));
}

}  // namespace

const char* dtype_name(DType d) {
  switch (d) {
    case DType::f32: return "F32";
    case DType::f16: return "F16";
    case DType::bf16: return "BF16";
    case DType::i64: return "I64";
    case DType::i32: return "I32";
    case DType::u8: return "U8";
  }
  return "?";
}

std::size_t dtype_size(DType d) {
  switch (d) {
    case DType::f32: return 4;
    case DType::f16: return 2;
    case DType::bf16: return 2;
    case DType::i64: return 8;
    case DType::i32: return 4;
    case DType::u8: return 1;
  }
  return 0;
}

std::int64_t TensorView::numel() const {
  std::int64_t n = 1;
  for (std::int64_t s : shape) n *= s;
  return n;
}

// ---------------------------------------------------------------- SafetensorsFile

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error(fmt::format("{}: cannot open: {}", path, errno_text()));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    std::string why = errno_text();
    ::close(fd);
    throw std::runtime_error(fmt::format("{}: cannot stat: {}", path, why));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw std::runtime_error(fmt::format("{}: not a regular file", path));
  }
  const std::uint64_t file_size = static_cast<std::uint64_t>(st.st_size);
  if (file_size < 8) {
    ::close(fd);
    throw std::runtime_error(fmt::format(
        "{}: {} bytes, too small for a safetensors file (8-byte header length first): truncated download?", path,
        file_size));
  }
  void* map = ::mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd, 0);
  std::string map_error = map == MAP_FAILED ? errno_text() : "";
  ::close(fd);  // the mapping keeps the file alive
  if (map == MAP_FAILED) throw std::runtime_error(fmt::format("{}: cannot mmap: {}", path, map_error));
  map_ = map;
  map_size_ = file_size;

  // From here on the destructor does not run on a throw: unmap by hand.
  try {
    const auto* base = static_cast<const std::uint8_t*>(map_);
    std::uint64_t header_len = 0;
    std::memcpy(&header_len, base, 8);  // little-endian on every supported target
    if (header_len > file_size - 8)
      throw std::runtime_error(fmt::format(
          "{}: header length {} runs past the end of the file ({} bytes): truncated download, or not a "
          "safetensors file?",
          path, header_len, file_size));
    if (header_len > kMaxHeaderBytes)
      throw std::runtime_error(
          fmt::format("{}: header length {} is above the 100 MB limit: not a safetensors file?", path, header_len));
    const char* header_begin = reinterpret_cast<const char*>(base + 8);
    const std::uint8_t* data = base + 8 + header_len;
    const std::uint64_t data_size = file_size - 8 - header_len;

    // Parse, noting top-level keys given twice (json keeps only the last one).
    std::string duplicate;
    std::set<std::string> seen;
    json::parser_callback_t note_keys = [&](int depth, json::parse_event_t event, json& parsed) {
      if (event == json::parse_event_t::key && depth == 1 && !seen.insert(parsed.get<std::string>()).second &&
          duplicate.empty())
        duplicate = parsed.get<std::string>();
      return true;
    };
    json header = json::parse(header_begin, header_begin + header_len, note_keys, /*allow_exceptions=*/false);
    if (header.is_discarded())
      throw std::runtime_error(fmt::format("{}: the {}-byte header is not valid JSON: not a safetensors file?", path,
                                           header_len));
    if (!header.is_object())
      throw std::runtime_error(fmt::format("{}: the header is JSON but not an object", path));
    if (!duplicate.empty())
      throw std::runtime_error(fmt::format("{}: the header names \"{}\" twice", path, duplicate));

    struct Extent {
      std::uint64_t begin, end;
      const std::string* name;
    };
    std::vector<Extent> extents;
    for (auto& [name, entry] : header.items()) {
      if (name == "__metadata__") {
        if (!entry.is_object())
          throw std::runtime_error(fmt::format("{}: __metadata__ is not an object of strings", path));
        for (auto& [k, v] : entry.items()) {
          if (!v.is_string())
            throw std::runtime_error(fmt::format("{}: __metadata__ key \"{}\" is not a string", path, k));
          metadata_[k] = v.get<std::string>();
        }
        continue;
      }
      // C++17 lambdas cannot capture a structured binding (clang refuses it): capture a reference.
      auto bad = [&, &tensor = name](const std::string& what) {
        return std::runtime_error(fmt::format("{}: tensor {}: {}", path, tensor, what));
      };
      if (name.empty()) throw std::runtime_error(fmt::format("{}: a tensor has an empty name", path));
      if (!entry.is_object()) throw bad("entry is not an object");
      if (!entry.contains("dtype") || !entry["dtype"].is_string()) throw bad("\"dtype\" is missing or not a string");
      if (!entry.contains("shape") || !entry["shape"].is_array()) throw bad("\"shape\" is missing or not an array");
      if (!entry.contains("data_offsets") || !entry["data_offsets"].is_array() || entry["data_offsets"].size() != 2)
        throw bad("\"data_offsets\" is missing or not [begin, end]");

      TensorView view;
      view.name = name;
      std::string dtype = entry["dtype"].get<std::string>();
      if (!parse_dtype(dtype, &view.dtype))
        throw bad(fmt::format("dtype {} is not supported (align2 reads F32, F16, BF16, I64, I32, U8)",
                              dtype.size() > 40 ? dtype.substr(0, 40) + "..." : dtype));

      std::uint64_t numel = 1;
      for (const json& dim : entry["shape"]) {
        std::uint64_t d = 0;
        if (!as_u64(dim, &d) || d > static_cast<std::uint64_t>(INT64_MAX))
          throw bad("shape holds something other than non-negative integers");
        view.shape.push_back(static_cast<std::int64_t>(d));
        if (__builtin_mul_overflow(numel, d, &numel))
          throw bad(fmt::format("shape {} overflows 64 bits", shape_text(view.shape)));
      }
      std::uint64_t nbytes = 0;
      if (__builtin_mul_overflow(numel, static_cast<std::uint64_t>(dtype_size(view.dtype)), &nbytes))
        throw bad(fmt::format("shape {} overflows 64 bits", shape_text(view.shape)));

      std::uint64_t begin = 0, end = 0;
      if (!as_u64(entry["data_offsets"][0], &begin) || !as_u64(entry["data_offsets"][1], &end))
        throw bad("data_offsets are not non-negative integers");
      if (begin > end) throw bad(fmt::format("data_offsets [{}, {}] end before they begin", begin, end));
      if (end > data_size)
        throw bad(fmt::format(
            "data_offsets [{}, {}] run past the end of the file (data section has {} bytes): truncated download?",
            begin, end, data_size));
      if (end - begin != nbytes)
        throw bad(fmt::format("data_offsets [{}, {}] hold {} bytes, but {} {} needs {} bytes", begin, end, end - begin,
                              dtype, shape_text(view.shape), nbytes));
      view.data = data + begin;
      view.nbytes = static_cast<std::size_t>(nbytes);
      auto [it, inserted] = tensors_.emplace(name, std::move(view));
      if (nbytes > 0) extents.push_back({begin, end, &it->first});
    }

    // No two tensors may share bytes (empty tensors hold none).
    std::sort(extents.begin(), extents.end(), [](const Extent& a, const Extent& b) {
      return a.begin != b.begin ? a.begin < b.begin : *a.name < *b.name;
    });
    for (std::size_t i = 1; i < extents.size(); ++i)
      if (extents[i].begin < extents[i - 1].end)
        throw std::runtime_error(fmt::format("{}: tensor {}: data_offsets [{}, {}] overlap tensor {} at [{}, {}]", path,
                                             *extents[i].name, extents[i].begin, extents[i].end, *extents[i - 1].name,
                                             extents[i - 1].begin, extents[i - 1].end));
  } catch (...) {
    ::munmap(map_, map_size_);
    map_ = nullptr;
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, map_size_);
}

// ---------------------------------------------------------------- Checkpoint

Checkpoint::Checkpoint(const std::string& path) : path_(path) {
  std::error_code ec;
  fs::file_status status = fs::status(path, ec);
  if (ec || !fs::exists(status))
    throw std::runtime_error(fmt::format("{}: no such checkpoint file or folder", path));

  auto add_file = [&](const std::string& file) -> SafetensorsFile& {
    files_.push_back(std::make_unique<SafetensorsFile>(file));
    return *files_.back();
  };
  std::map<std::string, std::string> owner;  // tensor -> file holding it, for collision messages
  auto index_all = [&](const SafetensorsFile& f, const std::string& where) {
    for (const auto& [name, view] : f.tensors()) {
      auto [it, inserted] = owner.emplace(name, f.path());
      if (!inserted)
        throw std::runtime_error(
            fmt::format("{}: tensor {} is in two shards: {} and {}", where, name, it->second, f.path()));
      index_[name] = &view;
    }
  };

  // A sharded checkpoint: model.safetensors.index.json {"weight_map": {tensor: shard}}.
  auto load_index = [&](const fs::path& index_path) {
    const std::string ip = index_path.string();
    const fs::path folder = index_path.parent_path();
    json index = json::parse(read_small_file(ip, kMaxIndexBytes), nullptr, false);
    if (index.is_discarded() || !index.is_object()) throw std::runtime_error(ip + ": not a JSON object");
    if (!index.contains("weight_map") || !index["weight_map"].is_object())
      throw std::runtime_error(ip + ": key \"weight_map\" is missing or not an object");
    std::map<std::string, SafetensorsFile*> shards;  // shard file name -> mapped file
    for (auto& [tensor, shard] : index["weight_map"].items()) {
      if (!shard.is_string())
        throw std::runtime_error(fmt::format("{}: weight_map[\"{}\"] is not a file name", ip, tensor));
      const std::string name = shard.get<std::string>();
      // Plain names inside the folder only: no separators, no "." or "..", no NUL.
      if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
          name.find('\\') != std::string::npos || name.find('\0') != std::string::npos)
        throw std::runtime_error(fmt::format(
            "{}: weight_map[\"{}\"] = \"{}\" is not a plain file name inside the checkpoint folder", ip, tensor, name));
      if (has_pickle_extension(name)) refuse_pickle(ip, name);
      if (shards.count(name)) continue;
      fs::path shard_path = folder / name;
      if (!fs::exists(shard_path))
        throw std::runtime_error(fmt::format("{}: shard {} (holding tensor {}) is missing: incomplete download?", ip,
                                             shard_path.string(), tensor));
      shards[name] = &add_file(shard_path.string());
    }
    for (auto& [tensor, shard] : index["weight_map"].items()) {
      const SafetensorsFile* f = shards.at(shard.get<std::string>());
      if (!f->tensors().count(tensor))
        throw std::runtime_error(fmt::format("{}: tensor {} is missing from its shard {}", ip, tensor, f->path()));
    }
    for (const auto& file : files_) index_all(*file, ip);
  };

  if (fs::is_directory(status)) {
    const fs::path folder(path);
    if (fs::exists(folder / "model.safetensors.index.json")) {
      load_index(folder / "model.safetensors.index.json");
    } else if (fs::exists(folder / "model.safetensors")) {
      index_all(add_file((folder / "model.safetensors").string()), path);
    } else {
      std::vector<std::string> pickles, others;
      for (const auto& entry : fs::directory_iterator(folder, ec)) {
        const std::string name = entry.path().filename().string();
        if (has_pickle_extension(entry.path()) || name == "pytorch_model.bin.index.json") pickles.push_back(name);
        else if (entry.path().extension() == ".safetensors") others.push_back(name);
      }
      std::sort(pickles.begin(), pickles.end());
      std::sort(others.begin(), others.end());
      if (!others.empty())
        throw std::runtime_error(fmt::format(
            "{}: no model.safetensors or model.safetensors.index.json (found {}); pass the .safetensors file itself",
            path, fmt::join(others, ", ")));
      if (!pickles.empty()) refuse_pickle(path, fmt::format("{}", fmt::join(pickles, ", ")));
      throw std::runtime_error(
          fmt::format("{}: no weights: neither model.safetensors nor model.safetensors.index.json is here", path));
    }
  } else {
    const fs::path file(path);
    const std::string name = file.filename().string();
    if (has_pickle_extension(file) || name == "pytorch_model.bin.index.json") refuse_pickle(path, name);
    if (name == "model.safetensors.index.json") load_index(file);
    else index_all(add_file(path), path);
  }
}

bool SafetensorsFile::release(const TensorView& view) const {
  const auto* base = static_cast<const std::uint8_t*>(map_);
  if (map_ == nullptr || view.data < base || view.data + view.nbytes > base + map_size_) return false;
  const std::uintptr_t page = std::uintptr_t(::sysconf(_SC_PAGESIZE));
  const std::uintptr_t begin = std::uintptr_t(view.data) & ~(page - 1);
  const std::uintptr_t end = (std::uintptr_t(view.data + view.nbytes) + page - 1) & ~(page - 1);
  const std::uintptr_t map_end = (std::uintptr_t(base) + map_size_ + page - 1) & ~(page - 1);
  // A private read-only file mapping: dropped pages are read from the file again if touched.
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), std::min(end, map_end) - begin, MADV_DONTNEED);
  return true;
}

bool Checkpoint::has(const std::string& name) const { return index_.count(name) != 0; }

void Checkpoint::release(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) return;
  for (const auto& file : files_)
    if (file->release(*it->second)) return;
}

const TensorView& Checkpoint::get(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw std::runtime_error(fmt::format("{}: tensor {} is missing", path_, name));
  return *it->second;
}

const TensorView& Checkpoint::get(const std::string& name, const std::vector<std::int64_t>& shape) const {
  const TensorView& view = get(name);
  if (view.shape != shape)
    throw std::runtime_error(fmt::format("{}: tensor {} has shape {}, expected {}", path_, name,
                                         shape_text(view.shape), shape_text(shape)));
  return view;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(index_.size());
  for (const auto& [name, view] : index_) out.push_back(name);
  return out;
}

// ---------------------------------------------------------------- conversion

namespace {

// IEEE half -> float, exact for every input (subnormals, infinities, NaN payloads).
float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1fu;
  const std::uint32_t mant = h & 0x3ffu;
  std::uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);  // inf, or NaN with its payload
  } else if (exp != 0) {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  } else {
    float v = std::ldexp(static_cast<float>(mant), -24);  // zero or subnormal: mant * 2^-24, exact in float
    std::memcpy(&bits, &v, 4);
    bits |= sign;
  }
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
}

}  // namespace

void to_float32(const TensorView& view, float* out) {
  const std::size_t n = static_cast<std::size_t>(view.numel());
  if (n == 0) return;  // an empty tensor (a 0 in its shape): `out` may be null (an empty vector's data())
  const std::uint8_t* p = view.data;  // possibly unaligned: read through memcpy
  switch (view.dtype) {
    case DType::f32:
      std::memcpy(out, p, n * 4);
      break;
    case DType::f16:
      for (std::size_t i = 0; i < n; ++i) {
        std::uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = half_to_float(h);
      }
      break;
    case DType::bf16:
      for (std::size_t i = 0; i < n; ++i) {
        std::uint16_t b;
        std::memcpy(&b, p + 2 * i, 2);
        std::uint32_t bits = static_cast<std::uint32_t>(b) << 16;
        std::memcpy(&out[i], &bits, 4);
      }
      break;
    case DType::i64:
      for (std::size_t i = 0; i < n; ++i) {
        std::int64_t v;
        std::memcpy(&v, p + 8 * i, 8);
        out[i] = static_cast<float>(v);
      }
      break;
    case DType::i32:
      for (std::size_t i = 0; i < n; ++i) {
        std::int32_t v;
        std::memcpy(&v, p + 4 * i, 4);
        out[i] = static_cast<float>(v);
      }
      break;
    case DType::u8:
      for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<float>(p[i]);
      break;
  }
}

// ---------------------------------------------------------------- writing

void write_safetensors(const std::string& path, const std::vector<TensorData>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<const TensorData*> sorted;
  for (const TensorData& t : tensors) sorted.push_back(&t);
  std::sort(sorted.begin(), sorted.end(), [](const TensorData* a, const TensorData* b) { return a->name < b->name; });

  json header = json::object();
  if (!metadata.empty()) {
    json meta = json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = meta;
  }
  std::uint64_t offset = 0;
  for (std::size_t i = 0; i < sorted.size(); ++i) {
    const TensorData& t = *sorted[i];
    if (t.name.empty() || t.name == "__metadata__")
      throw std::runtime_error(fmt::format("{}: cannot write a tensor named \"{}\"", path, t.name));
    if (i > 0 && sorted[i - 1]->name == t.name)
      throw std::runtime_error(fmt::format("{}: tensor {} given twice", path, t.name));
    std::uint64_t numel = 1;
    for (std::int64_t d : t.shape) {
      if (d < 0) throw std::runtime_error(fmt::format("{}: tensor {}: negative dimension", path, t.name));
      numel *= static_cast<std::uint64_t>(d);
    }
    if (numel * dtype_size(t.dtype) != t.bytes.size())
      throw std::runtime_error(fmt::format("{}: tensor {}: {} {} needs {} bytes, {} given", path, t.name,
                                           dtype_name(t.dtype), shape_text(t.shape), numel * dtype_size(t.dtype),
                                           t.bytes.size()));
    header[t.name] = {{"dtype", dtype_name(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data section starts 8-byte aligned
  const std::uint64_t header_len = text.size();

  const std::string tmp = fmt::format("{}.tmp.{}", path, ::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error(fmt::format("{}: cannot create {}: {}", path, tmp, errno_text()));
  auto write_all = [&](const void* p, std::size_t n) {
    const auto* b = static_cast<const std::uint8_t*>(p);
    while (n > 0) {
      ssize_t w = ::write(fd, b, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return false;
      b += w;
      n -= static_cast<std::size_t>(w);
    }
    return true;
  };
  bool ok = write_all(&header_len, 8) && write_all(text.data(), text.size());
  for (const TensorData* t : sorted) ok = ok && write_all(t->bytes.data(), t->bytes.size());
  std::string why = ok ? "" : errno_text();
  if (ok && ::fsync(fd) != 0) {
    ok = false;
    why = errno_text();
  }
  if (::close(fd) != 0 && ok) {
    ok = false;
    why = errno_text();
  }
  if (ok && ::rename(tmp.c_str(), path.c_str()) != 0) {
    ok = false;
    why = errno_text();
  }
  if (!ok) {
    ::unlink(tmp.c_str());
    throw std::runtime_error(fmt::format("{}: cannot write: {}", path, why));
  }
}

TensorData float_tensor(const std::string& name, std::vector<std::int64_t> shape, const std::vector<float>& values) {
  std::int64_t numel = 1;
  for (std::int64_t d : shape) numel *= d;
  if (numel < 0 || static_cast<std::size_t>(numel) != values.size())
    throw std::invalid_argument(fmt::format("float_tensor {}: shape {} needs {} values, {} given", name,
                                            shape_text(shape), numel, values.size()));
  TensorData t;
  t.name = name;
  t.dtype = DType::f32;
  t.shape = std::move(shape);
  t.bytes.resize(values.size() * 4);
  if (!values.empty()) std::memcpy(t.bytes.data(), values.data(), t.bytes.size());
  return t;
}

}  // namespace align2
