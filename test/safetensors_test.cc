// safetensors reading and writing: round trips, the real stories260K checkpoint checked
// against an independent reader (python3 + numpy parsing the file by hand), exact
// F16/BF16 conversion, and a clear error naming file and tensor for each bad checkpoint.
#include "core/model/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "test/test_support.h"

namespace align2 {
namespace {

namespace fs = std::filesystem;

// Runs `fn` and returns the message of the std::runtime_error it throws ("" when none).
template <typename Fn>
std::string error_of(Fn fn) {
  try {
    fn();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

// A raw safetensors file from a header text and a data section.
void write_raw(const std::string& path, const std::string& header, const std::string& data) {
  std::string bytes(8, '\0');
  std::uint64_t n = header.size();
  std::memcpy(bytes.data(), &n, 8);
  test::write_file(path, bytes + header + data);
}

TensorData raw_tensor(const std::string& name, DType dtype, std::vector<std::int64_t> shape, std::size_t nbytes,
                      std::uint8_t seed) {
  TensorData t;
  t.name = name;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.bytes.resize(nbytes);
  for (std::size_t i = 0; i < nbytes; ++i) t.bytes[i] = static_cast<std::uint8_t>(seed + 7 * i);
  return t;
}

std::uint32_t bits_of(float f) {
  std::uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

TEST(Safetensors, RoundTripAllDtypes) {
  std::string dir = test::scratch_dir("st-roundtrip");
  std::string path = dir + "/model.safetensors";
  std::vector<TensorData> tensors = {
      float_tensor("w.b", {2, 3}, {1, 2, 3, 4, 5, 6}),
      raw_tensor("w.a", DType::f16, {5}, 10, 1),  // written first: sorted by name
      raw_tensor("bf", DType::bf16, {3, 1}, 6, 2),
      raw_tensor("ids", DType::i64, {2}, 16, 3),
      raw_tensor("i32", DType::i32, {1, 1, 3}, 12, 4),
      raw_tensor("bytes", DType::u8, {7}, 7, 5),
      raw_tensor("scalar", DType::f32, {}, 4, 6),
      raw_tensor("empty", DType::f32, {0, 4}, 0, 7),
  };
  write_safetensors(path, tensors, {{"format", "pt"}, {"note", "align2 test"}});

  // No temporary file is left beside it.
  int entries = 0;
  for (const auto& e : fs::directory_iterator(dir)) entries += e.path().filename() == "model.safetensors" ? 1 : 100;
  EXPECT_EQ(entries, 1);

  // Header length is a multiple of 8; data section contiguous in name order.
  std::string bytes = test::read_file(path);
  std::uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  std::size_t total = 0;
  for (const TensorData& t : tensors) total += t.bytes.size();
  EXPECT_EQ(bytes.size(), 8 + n + total);

  SafetensorsFile f(path);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("note"), "align2 test");
  ASSERT_EQ(f.tensors().size(), tensors.size());
  const std::uint8_t* data = reinterpret_cast<const std::uint8_t*>(bytes.data()) + 8 + n;
  std::size_t expect_offset = 0;
  for (const auto& [name, view] : f.tensors()) {  // std::map: name order = file order
    const TensorData* src = nullptr;
    for (const TensorData& t : tensors)
      if (t.name == name) src = &t;
    ASSERT_NE(src, nullptr) << name;
    EXPECT_EQ(view.name, name);
    EXPECT_EQ(view.dtype, src->dtype) << name;
    EXPECT_EQ(view.shape, src->shape) << name;
    EXPECT_EQ(view.nbytes, src->bytes.size()) << name;
    EXPECT_EQ(static_cast<std::size_t>(view.numel()) * dtype_size(view.dtype), view.nbytes) << name;
    if (view.nbytes > 0) {
      EXPECT_EQ(std::memcmp(view.data, src->bytes.data(), view.nbytes), 0) << name;
    }
    if (view.nbytes > 0) {
      EXPECT_EQ(static_cast<std::size_t>(view.data - f.tensors().begin()->second.data), expect_offset) << name;
      EXPECT_EQ(std::memcmp(data + expect_offset, src->bytes.data(), view.nbytes), 0) << name;
    }
    expect_offset += view.nbytes;
  }
  EXPECT_EQ(f.tensors().at("scalar").numel(), 1);
  EXPECT_EQ(f.tensors().at("empty").numel(), 0);

  std::vector<float> w(6);
  to_float32(f.tensors().at("w.b"), w.data());
  EXPECT_EQ(w, (std::vector<float>{1, 2, 3, 4, 5, 6}));

  // Rewriting replaces the file whole.
  write_safetensors(path, {float_tensor("only", {1}, {42})});
  Checkpoint ckpt(path);
  EXPECT_EQ(ckpt.names(), std::vector<std::string>{"only"});
}

// Resident pages of this process (/proc/self/statm), in bytes.
std::uint64_t resident_bytes() {
  std::ifstream in("/proc/self/statm");
  std::uint64_t size = 0, resident = 0;
  in >> size >> resident;
  return resident * std::uint64_t(::sysconf(_SC_PAGESIZE));
}

// A loader hands a tensor's mapped pages back once it has copied them: the process's
// resident memory drops by the tensor's size, and the tensor still reads the same.
TEST(Safetensors, ReleasedPagesLeaveMemoryAndReadBackTheSame) {
  const std::string dir = test::scratch_dir("safetensors-release");
  const std::int64_t n = 8 << 20;  // 8M floats: 32 MiB
  std::vector<float> values(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) values[std::size_t(i)] = float(i % 1000) * 0.5f;
  write_safetensors(dir + "/big.safetensors", {float_tensor("big", {n}, values), float_tensor("small", {2}, {1, 2})});
  std::vector<float>().swap(values);
  Checkpoint ckpt(dir + "/big.safetensors");
  const TensorView& v = ckpt.get("big");
  auto checksum = [&] {
    double sum = 0;
    for (std::int64_t i = 0; i < n; i += 1) {
      float x;
      std::memcpy(&x, v.data + 4 * i, 4);
      sum += x;
    }
    return sum;
  };
  const double before = checksum();  // every page of the tensor touched
  const std::uint64_t touched = resident_bytes();
  ckpt.release("big");
  const std::uint64_t released = resident_bytes();
  EXPECT_GE(touched, released + (24u << 20)) << "touched " << touched << " B, after release " << released << " B";
  EXPECT_EQ(checksum(), before);  // read from the file again
  ckpt.release("absent");          // no-op
  std::vector<float> small(2);
  to_float32(ckpt.get("small"), small.data());
  EXPECT_EQ(small, (std::vector<float>{1, 2}));
}

TEST(Safetensors, WriteRefusesBadInput) {
  std::string dir = test::scratch_dir("st-write-bad");
  TensorData t = float_tensor("x", {2}, {1, 2});
  t.bytes.pop_back();
  std::string err = error_of([&] { write_safetensors(dir + "/a.safetensors", {t}); });
  EXPECT_NE(err.find("tensor x"), std::string::npos) << err;
  err = error_of([&] {
    write_safetensors(dir + "/b.safetensors", {float_tensor("x", {1}, {1}), float_tensor("x", {1}, {2})});
  });
  EXPECT_NE(err.find("given twice"), std::string::npos) << err;
  err = error_of([&] { write_safetensors(dir + "/no/such/dir/c.safetensors", {float_tensor("x", {1}, {1})}); });
  EXPECT_NE(err.find("no/such/dir/c.safetensors"), std::string::npos) << err;
  EXPECT_THROW(float_tensor("x", {2, 2}, {1, 2, 3}), std::invalid_argument);
}

// ---------------------------------------------------------------- the real checkpoint

TEST(Safetensors, RealStories260KNamesAndShapes) {
  std::string path = test::shared_path("models/stories260K-hf/model.safetensors");
  Checkpoint ckpt(path);
  // config.json: dim 64, 5 layers, 8 heads, 4 kv heads (head_dim 8), vocab 512,
  // intermediate 172, tied embeddings (no lm_head.weight).
  std::map<std::string, std::vector<std::int64_t>> expected = {
      {"model.embed_tokens.weight", {512, 64}},
      {"model.norm.weight", {64}},
  };
  for (int l = 0; l < 5; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    expected[p + "input_layernorm.weight"] = {64};
    expected[p + "post_attention_layernorm.weight"] = {64};
    expected[p + "self_attn.q_proj.weight"] = {64, 64};
    expected[p + "self_attn.k_proj.weight"] = {32, 64};
    expected[p + "self_attn.v_proj.weight"] = {32, 64};
    expected[p + "self_attn.o_proj.weight"] = {64, 64};
    expected[p + "mlp.gate_proj.weight"] = {172, 64};
    expected[p + "mlp.up_proj.weight"] = {172, 64};
    expected[p + "mlp.down_proj.weight"] = {64, 172};
  }
  std::vector<std::string> names;
  for (const auto& [name, shape] : expected) names.push_back(name);
  EXPECT_EQ(ckpt.names(), names);
  EXPECT_FALSE(ckpt.has("lm_head.weight"));
  for (const auto& [name, shape] : expected) {
    const TensorView& v = ckpt.get(name, shape);
    EXPECT_EQ(v.dtype, DType::f32) << name;
  }
  // Folder form gives the same tensors.
  Checkpoint folder(fs::path(path).parent_path().string());
  EXPECT_EQ(folder.names(), names);
  SafetensorsFile f(path);
  EXPECT_EQ(f.metadata().at("format"), "pt");
}

TEST(Safetensors, RealStories260KValuesMatchNumpy) {
  std::string path = test::shared_path("models/stories260K-hf/model.safetensors");
  std::string dir = test::scratch_dir("st-numpy");
  // The independent reader: header JSON and np.frombuffer, nothing of align2.
  test::write_file(dir + "/read.py", R"PY(
import json, struct, sys
import numpy as np
path = sys.argv[1]
raw = open(path, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
data = raw[8 + n:]
for name in sys.argv[2:]:
    e = header[name]
    a, b = e["data_offsets"]
    assert e["dtype"] == "F32"
    x = np.frombuffer(data[a:b], dtype="<f4").reshape(e["shape"])
    flat = x.reshape(-1)
    idx = [0, 1, flat.size // 2, flat.size - 1]
    bits = " ".join("%d:%08x" % (i, flat[i:i + 1].view("<u4")[0]) for i in idx)
    print(name, flat.size, repr(float(flat.astype(np.float64).sum())), repr(float(np.abs(flat.astype(np.float64)).max())), bits)
)PY");
  std::vector<std::string> names = {"model.embed_tokens.weight", "model.layers.0.self_attn.k_proj.weight",
                                    "model.layers.4.mlp.down_proj.weight", "model.norm.weight"};
  std::string cmd = "/usr/bin/python3 " + dir + "/read.py " + path;
  for (const auto& n : names) cmd += " " + n;
  test::CommandResult r = test::run_command(cmd);
  ASSERT_EQ(r.exit_code, 0) << r.err;

  Checkpoint ckpt(path);
  std::istringstream lines(r.out);
  std::string line;
  int checked = 0;
  while (std::getline(lines, line)) {
    std::istringstream in(line);
    std::string name;
    std::size_t numel = 0;
    double sum = 0, absmax = 0;
    in >> name >> numel >> sum >> absmax;
    const TensorView& v = ckpt.get(name);
    ASSERT_EQ(static_cast<std::size_t>(v.numel()), numel) << name;
    std::vector<float> values(numel);
    to_float32(v, values.data());
    double my_sum = 0, my_absmax = 0;
    for (float x : values) {
      my_sum += x;
      my_absmax = std::max(my_absmax, std::fabs(static_cast<double>(x)));
    }
    EXPECT_NEAR(my_sum, sum, 1e-9 * (1 + std::fabs(sum)) + 1e-6) << name;
    EXPECT_EQ(my_absmax, absmax) << name;
    EXPECT_GT(my_absmax, 0.0) << name;
    std::string item;
    while (in >> item) {
      std::size_t colon = item.find(':');
      std::size_t i = std::stoul(item.substr(0, colon));
      std::uint32_t bits = static_cast<std::uint32_t>(std::stoul(item.substr(colon + 1), nullptr, 16));
      EXPECT_EQ(bits_of(values[i]), bits) << name << "[" << i << "]";
    }
    ++checked;
  }
  EXPECT_EQ(checked, 4) << r.out;
}

// ---------------------------------------------------------------- F16 / BF16

TEST(Safetensors, F16AllBitPatternsMatchNumpy) {
  std::string dir = test::scratch_dir("st-f16");
  TensorData t;
  t.name = "h";
  t.dtype = DType::f16;
  t.shape = {65536};
  t.bytes.resize(2 * 65536);
  for (std::uint32_t i = 0; i < 65536; ++i) {
    std::uint16_t h = static_cast<std::uint16_t>(i);
    std::memcpy(&t.bytes[2 * i], &h, 2);
  }
  write_safetensors(dir + "/h.safetensors", {t});
  test::write_file(dir + "/conv.py", R"PY(
import sys
import numpy as np
h = np.arange(65536, dtype=np.uint32).astype("<u2").view("<f2")
open(sys.argv[1], "wb").write(h.astype("<f4").tobytes())
)PY");
  test::CommandResult r = test::run_command("/usr/bin/python3 " + dir + "/conv.py " + dir + "/numpy.f32");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string ref = test::read_file(dir + "/numpy.f32");
  ASSERT_EQ(ref.size(), 4u * 65536);

  SafetensorsFile f(dir + "/h.safetensors");
  std::vector<float> out(65536);
  to_float32(f.tensors().at("h"), out.data());
  int nans = 0;
  for (std::uint32_t i = 0; i < 65536; ++i) {
    float expect;
    std::memcpy(&expect, ref.data() + 4 * i, 4);
    if (std::isnan(expect)) {
      ++nans;
      EXPECT_TRUE(std::isnan(out[i])) << std::hex << i;
      EXPECT_EQ(std::signbit(out[i]), std::signbit(expect)) << std::hex << i;
    } else {
      EXPECT_EQ(bits_of(out[i]), bits_of(expect)) << std::hex << i;
    }
  }
  EXPECT_EQ(nans, 2 * 1023);
  // Hand-checked values: subnormals, the largest normal, infinities, signed zero.
  EXPECT_EQ(out[0x0001], std::ldexp(1.0f, -24));
  EXPECT_EQ(out[0x03ff], 1023 * std::ldexp(1.0f, -24));
  EXPECT_EQ(out[0x0400], std::ldexp(1.0f, -14));
  EXPECT_EQ(out[0x3c00], 1.0f);
  EXPECT_EQ(out[0xc000], -2.0f);
  EXPECT_EQ(out[0x3555], 0.333251953125f);
  EXPECT_EQ(out[0x7bff], 65504.0f);
  EXPECT_EQ(out[0x7c00], INFINITY);
  EXPECT_EQ(out[0xfc00], -INFINITY);
  EXPECT_TRUE(std::isnan(out[0x7e00]));
  EXPECT_EQ(bits_of(out[0x8000]), 0x80000000u);
  EXPECT_EQ(out[0x8001], -std::ldexp(1.0f, -24));
}

TEST(Safetensors, BF16Exact) {
  std::string dir = test::scratch_dir("st-bf16");
  TensorData t;
  t.name = "b";
  t.dtype = DType::bf16;
  t.shape = {256, 256};
  t.bytes.resize(2 * 65536);
  for (std::uint32_t i = 0; i < 65536; ++i) {
    std::uint16_t b = static_cast<std::uint16_t>(i);
    std::memcpy(&t.bytes[2 * i], &b, 2);
  }
  write_safetensors(dir + "/b.safetensors", {t});
  Checkpoint ckpt(dir + "/b.safetensors");
  std::vector<float> out(65536);
  to_float32(ckpt.get("b", {256, 256}), out.data());
  for (std::uint32_t i = 0; i < 65536; ++i) ASSERT_EQ(bits_of(out[i]), i << 16) << std::hex << i;
  // Hand-computed bf16 patterns (the top 16 bits of the float32).
  EXPECT_EQ(out[0x3f80], 1.0f);
  EXPECT_EQ(out[0xc040], -3.0f);
  EXPECT_EQ(out[0x3e20], 0.15625f);
  EXPECT_EQ(out[0x4049], 3.140625f);
  EXPECT_EQ(out[0x7f7f], 3.3895313892515355e38f);  // largest finite bf16
  EXPECT_EQ(out[0x0080], std::ldexp(1.0f, -126));   // smallest normal
  EXPECT_EQ(out[0x0001], std::ldexp(1.0f, -133));   // smallest subnormal
  EXPECT_EQ(out[0x7f80], INFINITY);
  EXPECT_EQ(out[0xff80], -INFINITY);
  EXPECT_TRUE(std::isnan(out[0x7fc0]));
  EXPECT_TRUE(std::isnan(out[0xffc1]));
}

TEST(Safetensors, IntegerDtypesConvertAsValues) {
  std::string dir = test::scratch_dir("st-int");
  TensorData a = raw_tensor("a", DType::i64, {3}, 24, 0);
  std::int64_t av[3] = {-5, 0, 1ll << 40};
  std::memcpy(a.bytes.data(), av, 24);
  TensorData b = raw_tensor("b", DType::i32, {2}, 8, 0);
  std::int32_t bv[2] = {-7, 123456};
  std::memcpy(b.bytes.data(), bv, 8);
  TensorData c = raw_tensor("c", DType::u8, {3}, 3, 0);
  c.bytes = {0, 128, 255};
  write_safetensors(dir + "/i.safetensors", {a, b, c});
  Checkpoint ckpt(dir + "/i.safetensors");
  std::vector<float> out(3);
  to_float32(ckpt.get("a"), out.data());
  EXPECT_EQ(out, (std::vector<float>{-5, 0, 1099511627776.0f}));
  to_float32(ckpt.get("b"), out.data());
  EXPECT_EQ(out[0], -7);
  EXPECT_EQ(out[1], 123456);
  to_float32(ckpt.get("c"), out.data());
  EXPECT_EQ(out, (std::vector<float>{0, 128, 255}));
}

// ---------------------------------------------------------------- bad files

struct BadCase {
  const char* what;
  std::string header;
  std::string data;
  std::vector<std::string> expect;  // substrings of the message (the path is always checked)
};

TEST(Safetensors, BadFilesGiveClearErrors) {
  std::string dir = test::scratch_dir("st-bad");
  const std::string t = "model.layers.0.mlp.up_proj.weight";
  std::vector<BadCase> cases = {
      {"header not JSON", "{\"a\": [1, 2", "", {"not valid JSON"}},
      {"header JSON but an array", "[1, 2, 3]", "", {"not an object"}},
      {"offsets past the end",
       "{\"" + t + "\": {\"dtype\": \"F32\", \"shape\": [2, 2], \"data_offsets\": [0, 16]}}",
       std::string(12, 'x'),
       {"tensor " + t, "data_offsets [0, 16] run past the end of the file (data section has 12 bytes)",
        "truncated download?"}},
      {"overlapping tensors",
       "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
       " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
       std::string(12, 'x'),
       {"tensor b", "overlap tensor a"}},
      {"numel/bytes mismatch",
       "{\"" + t + "\": {\"dtype\": \"F16\", \"shape\": [3], \"data_offsets\": [0, 8]}}",
       std::string(8, 'x'),
       {"tensor " + t, "hold 8 bytes, but F16 [3] needs 6 bytes"}},
      {"unknown dtype",
       "{\"" + t + "\": {\"dtype\": \"F64\", \"shape\": [1], \"data_offsets\": [0, 8]}}",
       std::string(8, 'x'),
       {"tensor " + t, "dtype F64 is not supported"}},
      {"bool dtype", "{\"mask\": {\"dtype\": \"BOOL\", \"shape\": [1], \"data_offsets\": [0, 1]}}", "x",
       {"tensor mask", "dtype BOOL"}},
      {"negative dimension", "{\"w\": {\"dtype\": \"F32\", \"shape\": [-1, 2], \"data_offsets\": [0, 8]}}",
       std::string(8, 'x'), {"tensor w", "non-negative integers"}},
      {"float dimension", "{\"w\": {\"dtype\": \"F32\", \"shape\": [2.0], \"data_offsets\": [0, 8]}}",
       std::string(8, 'x'), {"tensor w", "non-negative integers"}},
      {"shape overflow",
       "{\"w\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 16], \"data_offsets\": [0, 8]}}",
       std::string(8, 'x'), {"tensor w", "overflows 64 bits"}},
      {"bytes overflow", "{\"w\": {\"dtype\": \"F32\", \"shape\": [4611686018427387905], \"data_offsets\": [0, 8]}}",
       std::string(8, 'x'), {"tensor w", "overflows 64 bits"}},
      {"offsets reversed", "{\"w\": {\"dtype\": \"U8\", \"shape\": [0], \"data_offsets\": [8, 0]}}",
       std::string(8, 'x'), {"tensor w", "end before they begin"}},
      {"offsets missing", "{\"w\": {\"dtype\": \"U8\", \"shape\": [1]}}", "x", {"tensor w", "data_offsets"}},
      {"negative offset", "{\"w\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [-1, 0]}}", "x",
       {"tensor w", "non-negative"}},
      {"duplicate name",
       "{\"w\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1]},"
       " \"w\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [1, 2]}}",
       "xx", {"names \"w\" twice"}},
      {"metadata not strings", "{\"__metadata__\": {\"format\": 1}}", "", {"__metadata__", "format"}},
      {"deeply nested shape",
       "{\"w\": {\"dtype\": \"F32\", \"shape\": " + std::string(200000, '[') + std::string(200000, ']') +
           ", \"data_offsets\": [0, 0]}}",
       "", {"tensor w", "shape holds something other than non-negative integers"}},
  };
  int i = 0;
  for (const BadCase& c : cases) {
    std::string path = dir + "/bad" + std::to_string(i++) + ".safetensors";
    write_raw(path, c.header, c.data);
    std::string err = error_of([&] { SafetensorsFile f(path); });
    ASSERT_FALSE(err.empty()) << c.what << ": no error";
    EXPECT_EQ(err.rfind(path + ": ", 0), 0u) << c.what << ": " << err;
    for (const std::string& s : c.expect) EXPECT_NE(err.find(s), std::string::npos) << c.what << ": " << err;
    // Checkpoint gives the same error.
    EXPECT_EQ(error_of([&] { Checkpoint ck(path); }), err) << c.what;
  }
}

TEST(Safetensors, TruncatedFiles) {
  std::string dir = test::scratch_dir("st-trunc");
  std::string good = dir + "/good.safetensors";
  write_safetensors(good, {float_tensor("a", {4}, {1, 2, 3, 4}), float_tensor("model.norm.weight", {4}, {5, 6, 7, 8})});
  std::string bytes = test::read_file(good);

  // Cut inside the data section: the last tensor runs past the end.
  std::string cut = dir + "/model.safetensors";
  test::write_file(cut, bytes.substr(0, bytes.size() - 3));
  std::string err = error_of([&] { Checkpoint ck(dir); });
  EXPECT_NE(err.find(cut + ": tensor model.norm.weight: data_offsets [16, 32] run past the end of the file "
                           "(data section has 29 bytes): truncated download?"),
            std::string::npos)
      << err;

  // Cut inside the header: the header length runs past the end.
  test::write_file(cut, bytes.substr(0, 20));
  err = error_of([&] { SafetensorsFile f(cut); });
  EXPECT_NE(err.find(cut + ": header length"), std::string::npos) << err;
  EXPECT_NE(err.find("runs past the end of the file (20 bytes)"), std::string::npos) << err;

  // Shorter than the length field.
  test::write_file(cut, bytes.substr(0, 5));
  err = error_of([&] { SafetensorsFile f(cut); });
  EXPECT_NE(err.find(cut + ": 5 bytes, too small"), std::string::npos) << err;
  test::write_file(cut, "");
  err = error_of([&] { SafetensorsFile f(cut); });
  EXPECT_NE(err.find(cut + ": 0 bytes, too small"), std::string::npos) << err;

  // A header length far past the end (e.g. an HTML error page saved as the file).
  test::write_file(cut, "<!DOCTYPE html><html>not found</html>");
  err = error_of([&] { SafetensorsFile f(cut); });
  EXPECT_NE(err.find(cut + ": header length"), std::string::npos) << err;

  // A header length above 100 MB inside a (sparse) file big enough to hold it.
  std::string big = dir + "/big.safetensors";
  {
    std::uint64_t n = (100ull << 20) + 8;
    std::string head(8, '\0');
    std::memcpy(head.data(), &n, 8);
    test::write_file(big, head);
    fs::resize_file(big, 8 + n + 16);
  }
  err = error_of([&] { SafetensorsFile f(big); });
  EXPECT_NE(err.find(big + ": header length 104857608 is above the 100 MB limit"), std::string::npos) << err;
  fs::remove(big);

  // Not a file at all.
  err = error_of([&] { SafetensorsFile f(dir); });
  EXPECT_NE(err.find(dir + ": not a regular file"), std::string::npos) << err;
  err = error_of([&] { Checkpoint ck(dir + "/nothing-here"); });
  EXPECT_NE(err.find(dir + "/nothing-here: no such checkpoint"), std::string::npos) << err;
}

TEST(Safetensors, ZeroSizeTensorsMayShareOffsets) {
  std::string dir = test::scratch_dir("st-empty");
  std::string path = dir + "/e.safetensors";
  write_raw(path,
            "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
            " \"e\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [4, 4]}}",
            std::string(8, 'x'));
  SafetensorsFile f(path);
  EXPECT_EQ(f.tensors().at("e").nbytes, 0u);
}

// ---------------------------------------------------------------- pickles

void expect_pickle_refusal(const std::string& err, const std::string& path) {
  EXPECT_EQ(err.rfind(path + ": ", 0), 0u) << err;
  for (const char* s : {"only safetensors", "pickle", "arbitrary code", "weights_only=True", "save_file(",
                        "safe_serialization=True", "mm_projector.bin"})
    EXPECT_NE(err.find(s), std::string::npos) << s << " in: " << err;
}

TEST(Safetensors, PickleCheckpointsAreRefused) {
  std::string dir = test::scratch_dir("st-pickle");
  // A pickle that would run code if unpickled; align2 never reads it.
  std::string pickle = "\x80\x02" "cos\nsystem\n(S'echo pwned'\ntR.";
  test::write_file(dir + "/pytorch_model.bin", pickle);
  test::write_file(dir + "/config.json", "{}");
  std::string err = error_of([&] { Checkpoint ck(dir); });
  expect_pickle_refusal(err, dir);
  EXPECT_NE(err.find("pytorch_model.bin"), std::string::npos) << err;

  err = error_of([&] { Checkpoint ck(dir + "/pytorch_model.bin"); });
  expect_pickle_refusal(err, dir + "/pytorch_model.bin");

  for (const char* name : {"mm_projector.bin", "weights.pt", "weights.pth", "last.ckpt"}) {
    std::string d = test::scratch_dir("st-pickle-one");
    test::write_file(d + "/" + name, pickle);
    expect_pickle_refusal(error_of([&] { Checkpoint ck(d); }), d);
    expect_pickle_refusal(error_of([&] { Checkpoint ck(d + "/" + name); }), d + "/" + name);
  }

  // Sharded pickles (liuhaotian/llava-v1.5-7b ships these).
  std::string sharded = test::scratch_dir("st-pickle-sharded");
  test::write_file(sharded + "/pytorch_model-00001-of-00002.bin", pickle);
  test::write_file(sharded + "/pytorch_model-00002-of-00002.bin", pickle);
  test::write_file(sharded + "/pytorch_model.bin.index.json", "{\"weight_map\": {}}");
  err = error_of([&] { Checkpoint ck(sharded); });
  expect_pickle_refusal(err, sharded);
  EXPECT_NE(err.find("pytorch_model-00001-of-00002.bin"), std::string::npos) << err;

  // A safetensors index that names a pickle shard.
  std::string mixed = test::scratch_dir("st-pickle-index");
  test::write_file(mixed + "/model.safetensors.index.json", "{\"weight_map\": {\"w\": \"pytorch_model.bin\"}}");
  test::write_file(mixed + "/pytorch_model.bin", pickle);
  expect_pickle_refusal(error_of([&] { Checkpoint ck(mixed); }), mixed + "/model.safetensors.index.json");

  // When safetensors sit beside the pickles, they are used.
  write_safetensors(dir + "/model.safetensors", {float_tensor("w", {1}, {1})});
  EXPECT_TRUE(Checkpoint(dir).has("w"));

  // An empty folder says so.
  std::string empty = test::scratch_dir("st-empty-folder");
  err = error_of([&] { Checkpoint ck(empty); });
  EXPECT_NE(err.find(empty + ": no weights"), std::string::npos) << err;
}

// ---------------------------------------------------------------- sharded checkpoints and get()

void write_two_shards(const std::string& dir) {
  write_safetensors(dir + "/model-00001-of-00002.safetensors",
                    {float_tensor("model.embed_tokens.weight", {4, 2}, {1, 2, 3, 4, 5, 6, 7, 8}),
                     float_tensor("model.layers.0.mlp.up_proj.weight", {3, 2}, {1, 1, 1, 2, 2, 2})});
  write_safetensors(dir + "/model-00002-of-00002.safetensors",
                    {float_tensor("model.norm.weight", {2}, {0.5f, 0.25f}),
                     float_tensor("lm_head.weight", {4, 2}, {8, 7, 6, 5, 4, 3, 2, 1})});
}

std::string index_json(const std::map<std::string, std::string>& map) {
  std::string s = "{\"metadata\": {\"total_size\": 96}, \"weight_map\": {";
  bool first = true;
  for (const auto& [k, v] : map) {
    s += (first ? "" : ", ") + ("\"" + k + "\": \"" + v + "\"");
    first = false;
  }
  return s + "}}";
}

const std::map<std::string, std::string> kGoodMap = {
    {"model.embed_tokens.weight", "model-00001-of-00002.safetensors"},
    {"model.layers.0.mlp.up_proj.weight", "model-00001-of-00002.safetensors"},
    {"model.norm.weight", "model-00002-of-00002.safetensors"},
    {"lm_head.weight", "model-00002-of-00002.safetensors"},
};

TEST(Safetensors, ShardedCheckpointLoads) {
  std::string dir = test::scratch_dir("st-sharded");
  write_two_shards(dir);
  test::write_file(dir + "/model.safetensors.index.json", index_json(kGoodMap));
  Checkpoint ckpt(dir);
  EXPECT_EQ(ckpt.names(), (std::vector<std::string>{"lm_head.weight", "model.embed_tokens.weight",
                                                    "model.layers.0.mlp.up_proj.weight", "model.norm.weight"}));
  std::vector<float> v(2);
  to_float32(ckpt.get("model.norm.weight", {2}), v.data());
  EXPECT_EQ(v, (std::vector<float>{0.5f, 0.25f}));
  std::vector<float> e(8);
  to_float32(ckpt.get("model.embed_tokens.weight", {4, 2}), e.data());
  EXPECT_EQ(e[7], 8);
  // The index file may be given directly.
  EXPECT_EQ(Checkpoint(dir + "/model.safetensors.index.json").names(), ckpt.names());
  // Each shard is mapped once.
  std::string maps = test::read_file("/proc/self/maps");
  std::size_t count = 0;
  for (std::size_t p = 0; (p = maps.find(dir + "/model-00001-of-00002.safetensors", p)) != std::string::npos; ++p)
    ++count;
  EXPECT_EQ(count, 1u);
}

TEST(Safetensors, BadShardedCheckpoints) {
  const std::string shard1 = "model-00001-of-00002.safetensors";
  struct Case {
    const char* what;
    std::map<std::string, std::string> map;
    std::vector<std::string> expect;
  };
  std::map<std::string, std::string> missing_shard = kGoodMap;
  missing_shard["model.norm.weight"] = "model-00003-of-00003.safetensors";
  std::map<std::string, std::string> absent_tensor = kGoodMap;
  absent_tensor["model.layers.1.mlp.up_proj.weight"] = shard1;
  std::map<std::string, std::string> traversal = kGoodMap;
  traversal["lm_head.weight"] = "../outside/model.safetensors";
  std::map<std::string, std::string> absolute = kGoodMap;
  absolute["lm_head.weight"] = "/etc/passwd";
  std::map<std::string, std::string> dotdot = kGoodMap;
  dotdot["lm_head.weight"] = "..";
  std::vector<Case> cases = {
      {"missing shard", missing_shard, {"model-00003-of-00003.safetensors", "is missing", "model.norm.weight"}},
      {"tensor absent from its shard", absent_tensor,
       {"tensor model.layers.1.mlp.up_proj.weight is missing from its shard", shard1}},
      {"../ in a shard name", traversal, {"\"../outside/model.safetensors\" is not a plain file name"}},
      {"absolute shard name", absolute, {"\"/etc/passwd\" is not a plain file name"}},
      {".. as a shard name", dotdot, {"\"..\" is not a plain file name"}},
  };
  for (const Case& c : cases) {
    std::string base = test::scratch_dir("st-bad-sharded");
    std::string dir = base + "/ckpt";
    fs::create_directories(dir);
    write_two_shards(dir);
    fs::create_directories(base + "/outside");
    write_safetensors(dir + "/../outside/model.safetensors", {float_tensor("lm_head.weight", {4, 2}, std::vector<float>(8))});
    std::string index = dir + "/model.safetensors.index.json";
    test::write_file(index, index_json(c.map));
    std::string err = error_of([&] { Checkpoint ck(dir); });
    EXPECT_EQ(err.rfind(index + ": ", 0), 0u) << c.what << ": " << err;
    for (const std::string& s : c.expect) EXPECT_NE(err.find(s), std::string::npos) << c.what << ": " << err;
  }

  // The same tensor in two shards.
  std::string dir = test::scratch_dir("st-collision");
  write_two_shards(dir);
  write_safetensors(dir + "/model-00002-of-00002.safetensors",
                    {float_tensor("model.norm.weight", {2}, {0.5f, 0.25f}),
                     float_tensor("lm_head.weight", {4, 2}, std::vector<float>(8)),
                     float_tensor("model.embed_tokens.weight", {1}, {0})});
  test::write_file(dir + "/model.safetensors.index.json", index_json(kGoodMap));
  std::string err = error_of([&] { Checkpoint ck(dir); });
  EXPECT_NE(err.find("tensor model.embed_tokens.weight is in two shards"), std::string::npos) << err;

  // Index not JSON / without weight_map.
  test::write_file(dir + "/model.safetensors.index.json", "{\"weight_map\": [");
  err = error_of([&] { Checkpoint ck(dir); });
  EXPECT_NE(err.find("model.safetensors.index.json: not a JSON object"), std::string::npos) << err;
  test::write_file(dir + "/model.safetensors.index.json", "{\"metadata\": {}}");
  err = error_of([&] { Checkpoint ck(dir); });
  EXPECT_NE(err.find("\"weight_map\" is missing"), std::string::npos) << err;

  // A bad shard is reported with the shard's own path.
  std::string bad = test::scratch_dir("st-bad-shard");
  write_two_shards(bad);
  test::write_file(bad + "/model-00002-of-00002.safetensors", "garbage!");
  test::write_file(bad + "/model.safetensors.index.json", index_json(kGoodMap));
  err = error_of([&] { Checkpoint ck(bad); });
  EXPECT_NE(err.find(bad + "/model-00002-of-00002.safetensors: header length"), std::string::npos) << err;
}

TEST(Safetensors, GetChecksNameAndShape) {
  std::string dir = test::scratch_dir("st-get");
  write_safetensors(dir + "/model.safetensors", {float_tensor("w", {2, 3}, {1, 2, 3, 4, 5, 6})});
  Checkpoint ckpt(dir);
  EXPECT_EQ(ckpt.path(), dir);
  EXPECT_TRUE(ckpt.has("w"));
  EXPECT_FALSE(ckpt.has("v"));
  EXPECT_EQ(ckpt.get("w", {2, 3}).numel(), 6);
  std::string err = error_of([&] { ckpt.get("w", {3, 2}); });
  EXPECT_EQ(err, dir + ": tensor w has shape [2, 3], expected [3, 2]");
  err = error_of([&] { ckpt.get("w", {6}); });
  EXPECT_EQ(err, dir + ": tensor w has shape [2, 3], expected [6]");
  err = error_of([&] { ckpt.get("model.layers.9.mlp.up_proj.weight"); });
  EXPECT_EQ(err, dir + ": tensor model.layers.9.mlp.up_proj.weight is missing");
}

TEST(Safetensors, DtypeNames) {
  EXPECT_STREQ(dtype_name(DType::f32), "F32");
  EXPECT_STREQ(dtype_name(DType::f16), "F16");
  EXPECT_STREQ(dtype_name(DType::bf16), "BF16");
  EXPECT_STREQ(dtype_name(DType::i64), "I64");
  EXPECT_STREQ(dtype_name(DType::i32), "I32");
  EXPECT_STREQ(dtype_name(DType::u8), "U8");
  EXPECT_EQ(dtype_size(DType::f32), 4u);
  EXPECT_EQ(dtype_size(DType::bf16), 2u);
  EXPECT_EQ(dtype_size(DType::i64), 8u);
  EXPECT_EQ(dtype_size(DType::u8), 1u);
}

}  // namespace
}  // namespace align2
