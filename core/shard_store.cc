// HDF5 shard store. The contract is core/shard_store.h; the on-disk layout is
// documented in docs/hdf5-schema.md (keep the two in step).
//
// Everything here uses the HDF5 C API directly. Every hid_t lives in exactly one
// Hid owner, so handles are closed on every path, including exceptions. Errors
// are reported as std::runtime_error naming the file and the failing step; HDF5's
// own error-stack printing is switched off while these functions run and the
// innermost HDF5 error message is copied into the exception instead.
#include "core/shard_store.h"

#include "core/record_validation.h"
#include "core/sample.h"

#include <fcntl.h>
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <system_error>
#include <utility>

namespace fs = std::filesystem;

namespace align2 {
namespace {

constexpr const char* kFormat = "align2-shard";  // value of the root attribute `format`

// Chunk length (elements along the single dimension) of every dataset; shorter
// datasets get one chunk of their own length (at least 1, HDF5 refuses 0).
constexpr hsize_t kChunkRows = 4096;
constexpr unsigned kDeflateLevel = 4;

// Rows converted per H5Dread when reading variable-length strings, so HDF5's own
// copies of the strings never hold more than one block at a time.
constexpr hsize_t kStringReadBlock = 65536;

// zlib's deflate cannot compress better than about 1032:1, so a dataset of n
// elements of s bytes each needs at least n*s/1032 bytes of file. Lengths read
// from a file are checked against this before anything is allocated for them.
constexpr hsize_t kMaxDeflateRatio = 1032;

// ---------------------------------------------------------------------------
// Handles and errors

using CloseFn = herr_t (*)(hid_t);

// Owns one HDF5 handle; closes it with the matching H5?close on destruction.
class Hid {
 public:
  Hid() = default;
  Hid(hid_t id, CloseFn close_fn) : id_(id), close_fn_(close_fn) {}
  ~Hid() {
    if (id_ >= 0) close_fn_(id_);
  }
  Hid(const Hid&) = delete;
  Hid& operator=(const Hid&) = delete;
  Hid(Hid&& other) noexcept : id_(other.id_), close_fn_(other.close_fn_) {
    other.id_ = H5I_INVALID_HID;
  }
  Hid& operator=(Hid&& other) noexcept {
    if (this != &other) {
      if (id_ >= 0) close_fn_(id_);
      id_ = other.id_;
      close_fn_ = other.close_fn_;
      other.id_ = H5I_INVALID_HID;
    }
    return *this;
  }

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }

  // Closes now and reports HDF5's status (H5Fclose's matters: it flushes the file).
  herr_t close() {
    herr_t status = 0;
    if (id_ >= 0) status = close_fn_(id_);
    id_ = H5I_INVALID_HID;
    return status;
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
  CloseFn close_fn_ = nullptr;
};

// Turns off HDF5's automatic error printing for this thread while alive and puts
// back whatever handler was installed before.
class ErrorPrintingOff {
 public:
  ErrorPrintingOff() {
    if (H5Eget_auto2(H5E_DEFAULT, &func_, &client_data_) < 0) {
      func_ = nullptr;
      client_data_ = nullptr;
    }
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  }
  ~ErrorPrintingOff() { H5Eset_auto2(H5E_DEFAULT, func_, client_data_); }
  ErrorPrintingOff(const ErrorPrintingOff&) = delete;
  ErrorPrintingOff& operator=(const ErrorPrintingOff&) = delete;

 private:
  H5E_auto2_t func_ = nullptr;
  void* client_data_ = nullptr;
};

herr_t take_innermost_error(unsigned n, const H5E_error2_t* err, void* data) {
  // Walked upward, entry 0 is the place where HDF5 detected the problem.
  if (n == 0 && err != nullptr && err->desc != nullptr) {
    *static_cast<std::string*>(data) = err->desc;
  }
  return 0;
}

// The innermost message on this thread's HDF5 error stack ("" when empty). Must be
// called right after the failing HDF5 call: the next API call clears the stack.
std::string hdf5_error_detail() {
  std::string detail;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, take_innermost_error, &detail);
  return detail;
}

// Throws runtime_error "<path>: <what> (HDF5: <detail>)".
[[noreturn]] void fail_hdf5(const std::string& path, const std::string& what) {
  std::string detail = hdf5_error_detail();
  std::string message = path + ": " + what;
  if (!detail.empty()) message += " (HDF5: " + detail + ")";
  throw std::runtime_error(message);
}

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error(path + ": " + what);
}

// Frees the strings HDF5 allocated when reading variable-length strings into
// `ptrs`, also when the read failed half way (entries start as nullptr).
struct VlenStrings {
  hid_t mem_type;           // borrowed: variable-length string memory type
  hid_t mem_space;          // borrowed: simple 1-D space of ptrs.size() elements
  std::vector<char*> ptrs;  // [count] one NUL-terminated string per element, may be nullptr

  VlenStrings(hid_t type, hid_t space, std::size_t count)
      : mem_type(type), mem_space(space), ptrs(count, nullptr) {}
  ~VlenStrings() {
    if (ptrs.empty()) return;
#if H5_VERSION_GE(1, 12, 0)
    H5Treclaim(mem_type, mem_space, H5P_DEFAULT, ptrs.data());
#else
    H5Dvlen_reclaim(mem_type, mem_space, H5P_DEFAULT, ptrs.data());
#endif
  }
  VlenStrings(const VlenStrings&) = delete;
  VlenStrings& operator=(const VlenStrings&) = delete;
};

// Variable-length, NUL-terminated string type tagged with `cset` (UTF-8 for
// everything align2 writes).
Hid make_vlen_string_type(const std::string& path, H5T_cset_t cset = H5T_CSET_UTF8) {
  Hid type(H5Tcopy(H5T_C_S1), H5Tclose);
  if (!type.valid() || H5Tset_size(type.get(), H5T_VARIABLE) < 0 ||
      H5Tset_cset(type.get(), cset) < 0) {
    fail_hdf5(path, "making the variable-length UTF-8 string type failed");
  }
  return type;
}

Hid make_space_1d(const std::string& path, hsize_t length) {
  Hid space(H5Screate_simple(1, &length, nullptr), H5Sclose);
  if (!space.valid()) fail_hdf5(path, "making a dataspace of " + std::to_string(length) + " elements failed");
  return space;
}

// ---------------------------------------------------------------------------
// Writing

// Throws std::invalid_argument when `value` holds a NUL byte: HDF5 variable-length
// strings are NUL-terminated, so the text after it would be lost silently.
void check_no_nul(const std::string& path, const std::string& value, const std::string& what) {
  if (value.find('\0') != std::string::npos) {
    throw std::invalid_argument("write_shard " + path + ": " + what +
                                " contains a NUL byte, which HDF5 strings cannot hold");
  }
}

void check_rows(const std::string& path, const ShardMeta& meta, const std::vector<ShardRow>& rows) {
  if (meta.schema_version != kShardSchemaVersion) {
    throw std::invalid_argument("write_shard " + path + ": meta.schema_version is " +
                                std::to_string(meta.schema_version) + " but this align2 writes version " +
                                std::to_string(kShardSchemaVersion));
  }
  check_no_nul(path, meta.align2_version, "attribute align2_version");
  check_no_nul(path, meta.config_fingerprint, "attribute config_fingerprint");
  check_no_nul(path, meta.input_fingerprint, "attribute input_fingerprint");
  check_no_nul(path, meta.stage, "attribute stage");
  check_no_nul(path, meta.stage_summary_json, "attribute stage_summary_json");
  check_no_nul(path, meta.timings_json, "attribute timings_json");
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const ShardRow& row = rows[i];
    const std::string where = "row " + std::to_string(i) + " (index " + std::to_string(row.index) + ")";
    if (row.rewritten_questions.size() != row.rewritten_answers.size()) {
      throw std::invalid_argument("write_shard " + path + ": " + where + " has " +
                                  std::to_string(row.rewritten_questions.size()) +
                                  " rewritten_questions but " +
                                  std::to_string(row.rewritten_answers.size()) +
                                  " rewritten_answers; they must pair up turn by turn");
    }
    check_no_nul(path, row.key, where + " column key");
    check_no_nul(path, row.id, where + " column id");
    check_no_nul(path, row.subset, where + " column subset");
    check_no_nul(path, row.status, where + " column status");
    check_no_nul(path, row.reason, where + " column reason");
    check_no_nul(path, row.message, where + " column message");
    check_no_nul(path, row.image, where + " column image");
    check_no_nul(path, row.record, where + " column record");
    for (const std::string& s : row.rewritten_questions) check_no_nul(path, s, where + " rewritten_questions");
    for (const std::string& s : row.rewritten_answers) check_no_nul(path, s, where + " rewritten_answers");
  }
}

void write_string_attr(const std::string& path, hid_t obj, const char* name, const std::string& value) {
  const std::string step = std::string("writing attribute '") + name + "' failed";
  Hid type = make_vlen_string_type(path);
  Hid space(H5Screate(H5S_SCALAR), H5Sclose);
  if (!space.valid()) fail_hdf5(path, step);
  Hid attr(H5Acreate2(obj, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (!attr.valid()) fail_hdf5(path, step);
  const char* text = value.c_str();
  if (H5Awrite(attr.get(), type.get(), &text) < 0) fail_hdf5(path, step);
  if (attr.close() < 0) fail_hdf5(path, step);
}

// Scalar numeric attribute: `value` points at one element of `mem_type`, stored as `file_type`.
void write_number_attr(const std::string& path, hid_t obj, const char* name, hid_t file_type,
                       hid_t mem_type, const void* value) {
  const std::string step = std::string("writing attribute '") + name + "' failed";
  Hid space(H5Screate(H5S_SCALAR), H5Sclose);
  if (!space.valid()) fail_hdf5(path, step);
  Hid attr(H5Acreate2(obj, name, file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (!attr.valid()) fail_hdf5(path, step);
  if (H5Awrite(attr.get(), mem_type, value) < 0) fail_hdf5(path, step);
  if (attr.close() < 0) fail_hdf5(path, step);
}

// Creates the 1-D dataset `name` of `length` elements of `file_type` (chunked,
// deflated, extendible, no timestamps) and writes `data` (`length` elements of
// `mem_type`; may be null when length is 0).
void write_dataset(const std::string& path, hid_t file, const char* name, hid_t file_type,
                   hid_t mem_type, const void* data, hsize_t length, bool shuffle) {
  const std::string step = std::string("writing dataset '") + name + "' failed";
  const hsize_t max_length = H5S_UNLIMITED;  // lets the chunked layout hold 0 elements
  Hid space(H5Screate_simple(1, &length, &max_length), H5Sclose);
  if (!space.valid()) fail_hdf5(path, step);

  const hsize_t chunk = std::max<hsize_t>(1, std::min(length, kChunkRows));
  Hid dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  if (!dcpl.valid() || H5Pset_chunk(dcpl.get(), 1, &chunk) < 0 ||
      (shuffle && H5Pset_shuffle(dcpl.get()) < 0) || H5Pset_deflate(dcpl.get(), kDeflateLevel) < 0 ||
      H5Pset_obj_track_times(dcpl.get(), false) < 0) {
    fail_hdf5(path, step + " (dataset creation properties)");
  }

  Hid dset(H5Dcreate2(file, name, file_type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT), H5Dclose);
  if (!dset.valid()) fail_hdf5(path, step);
  if (length > 0 && H5Dwrite(dset.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
    fail_hdf5(path, step);
  }
  if (dset.close() < 0) fail_hdf5(path, step);
}

// `strings`: [length] pointers to NUL-terminated UTF-8 text, owned by the caller.
void write_string_dataset(const std::string& path, hid_t file, const char* name,
                          const std::vector<const char*>& strings) {
  Hid type = make_vlen_string_type(path);
  write_dataset(path, file, name, type.get(), type.get(), strings.data(), strings.size(), false);
}

// Writes the whole file at `tmp_path`; errors name `path`, the file the caller asked for.
void write_shard_file(const std::string& path, const std::string& tmp_path, const ShardMeta& meta,
                      const std::vector<ShardRow>& rows) {
  Hid fcpl(H5Pcreate(H5P_FILE_CREATE), H5Pclose);
  // No timestamps on the root group either. (With 1.10.8 and the default file format
  // the root group gets none anyway; the datasets' dcpl setting is the one that matters.)
  if (!fcpl.valid() || H5Pset_obj_track_times(fcpl.get(), false) < 0) {
    fail_hdf5(path, "setting file creation properties failed");
  }
  Hid fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  // SEMI: H5Fclose fails instead of silently staying open if a handle leaked.
  // Library version bounds stay at their default (earliest) so old readers work.
  if (!fapl.valid() || H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_SEMI) < 0) {
    fail_hdf5(path, "setting file access properties failed");
  }
  Hid file(H5Fcreate(tmp_path.c_str(), H5F_ACC_TRUNC, fcpl.get(), fapl.get()), H5Fclose);
  if (!file.valid()) fail_hdf5(path, "creating temporary file " + tmp_path + " failed");
  const hid_t f = file.get();

  // --- attributes on the root group
  const std::int32_t schema_version = kShardSchemaVersion;
  const std::int32_t rank = meta.rank;
  const std::int32_t world_size = meta.world_size;
  const std::uint64_t input_records = meta.input_records;
  write_string_attr(path, f, "format", kFormat);
  write_number_attr(path, f, "schema_version", H5T_STD_I32LE, H5T_NATIVE_INT32, &schema_version);
  write_string_attr(path, f, "align2_version", meta.align2_version);
  write_string_attr(path, f, "config_fingerprint", meta.config_fingerprint);
  write_string_attr(path, f, "input_fingerprint", meta.input_fingerprint);
  write_string_attr(path, f, "stage", meta.stage);
  write_number_attr(path, f, "rank", H5T_STD_I32LE, H5T_NATIVE_INT32, &rank);
  write_number_attr(path, f, "world_size", H5T_STD_I32LE, H5T_NATIVE_INT32, &world_size);
  write_number_attr(path, f, "input_records", H5T_STD_U64LE, H5T_NATIVE_UINT64, &input_records);
  write_string_attr(path, f, "stage_summary_json", meta.stage_summary_json);
  write_string_attr(path, f, "timings_json", meta.timings_json);

  // --- per-row columns, [n] each
  const std::size_t n = rows.size();
  std::vector<std::uint64_t> index(n);
  std::vector<double> question_score(n), answer_score(n);
  std::vector<std::int8_t> selected_questions(n), selected_answers(n), kept(n), truncated(n);
  std::vector<std::int64_t> global_rank(n);
  for (std::size_t i = 0; i < n; ++i) {
    index[i] = rows[i].index;
    question_score[i] = rows[i].question_score;
    answer_score[i] = rows[i].answer_score;
    selected_questions[i] = rows[i].selected_questions;
    selected_answers[i] = rows[i].selected_answers;
    truncated[i] = rows[i].truncated;
    kept[i] = rows[i].kept;
    global_rank[i] = rows[i].global_rank;
  }
  write_dataset(path, f, "index", H5T_STD_U64LE, H5T_NATIVE_UINT64, index.data(), n, true);

  std::vector<const char*> text(n);  // [n] borrowed pointers into rows
  auto write_text_column = [&](const char* name, std::string ShardRow::*field) {
    for (std::size_t i = 0; i < n; ++i) text[i] = (rows[i].*field).c_str();
    write_string_dataset(path, f, name, text);
  };
  write_text_column("key", &ShardRow::key);
  write_text_column("id", &ShardRow::id);
  write_text_column("subset", &ShardRow::subset);
  write_text_column("status", &ShardRow::status);
  write_text_column("reason", &ShardRow::reason);
  write_text_column("message", &ShardRow::message);
  write_text_column("image", &ShardRow::image);
  write_text_column("record", &ShardRow::record);

  write_dataset(path, f, "question_score", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, question_score.data(), n, true);
  write_dataset(path, f, "answer_score", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, answer_score.data(), n, true);
  write_dataset(path, f, "selected_questions", H5T_STD_I8LE, H5T_NATIVE_INT8, selected_questions.data(), n, false);
  write_dataset(path, f, "selected_answers", H5T_STD_I8LE, H5T_NATIVE_INT8, selected_answers.data(), n, false);
  write_dataset(path, f, "kept", H5T_STD_I8LE, H5T_NATIVE_INT8, kept.data(), n, false);
  write_dataset(path, f, "truncated", H5T_STD_I8LE, H5T_NATIVE_INT8, truncated.data(), n, false);
  write_dataset(path, f, "global_rank", H5T_STD_I64LE, H5T_NATIVE_INT64, global_rank.data(), n, true);

  // --- ragged: answer_scores [total turns] + answer_scores_offsets [n + 1]
  std::vector<float> scores;
  std::vector<std::uint64_t> score_offsets(n + 1, 0);
  for (std::size_t i = 0; i < n; ++i) {
    scores.insert(scores.end(), rows[i].answer_scores.begin(), rows[i].answer_scores.end());
    score_offsets[i + 1] = scores.size();
  }
  write_dataset(path, f, "answer_scores", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, scores.data(), scores.size(), true);
  write_dataset(path, f, "answer_scores_offsets", H5T_STD_U64LE, H5T_NATIVE_UINT64, score_offsets.data(),
                score_offsets.size(), true);

  // --- ragged: rewritten_questions / rewritten_answers [total turns] + rewritten_offsets [n + 1]
  std::vector<const char*> questions, answers;  // borrowed pointers into rows
  std::vector<std::uint64_t> rewritten_offsets(n + 1, 0);
  for (std::size_t i = 0; i < n; ++i) {
    for (const std::string& s : rows[i].rewritten_questions) questions.push_back(s.c_str());
    for (const std::string& s : rows[i].rewritten_answers) answers.push_back(s.c_str());
    rewritten_offsets[i + 1] = questions.size();  // == answers.size(), checked in check_rows
  }
  write_string_dataset(path, f, "rewritten_questions", questions);
  write_string_dataset(path, f, "rewritten_answers", answers);
  write_dataset(path, f, "rewritten_offsets", H5T_STD_U64LE, H5T_NATIVE_UINT64, rewritten_offsets.data(),
                rewritten_offsets.size(), true);

  if (file.close() < 0) fail_hdf5(path, "closing temporary file " + tmp_path + " failed");
}

void fsync_path(const std::string& path, const std::string& target, bool directory) {
  int fd = ::open(target.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) fail(path, "opening " + target + " for fsync failed: " + std::strerror(errno));
  int status = ::fsync(fd);
  int saved = errno;
  ::close(fd);
  if (status != 0) fail(path, "fsync of " + target + " failed: " + std::strerror(saved));
}

// ---------------------------------------------------------------------------
// Reading

struct ShardFile {
  std::string path;
  Hid file;
  hsize_t file_size = 0;  // bytes
};

ShardFile open_shard_file(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) fail(path, "no such file");
  if (fs::is_directory(path, ec)) fail(path, "is a directory, not a shard file");
  ShardFile shard;
  shard.path = path;
  shard.file = Hid(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (!shard.file.valid()) fail_hdf5(path, "cannot open as an HDF5 file (damaged, truncated or not HDF5)");
  if (H5Fget_filesize(shard.file.get(), &shard.file_size) < 0) fail_hdf5(path, "reading the file size failed");
  return shard;
}

bool has_attr(const ShardFile& shard, const char* name) {
  htri_t exists = H5Aexists(shard.file.get(), name);
  if (exists < 0) fail_hdf5(shard.path, std::string("looking up attribute '") + name + "' failed");
  return exists > 0;
}

// Opens attribute `name` of the root group and checks it holds exactly one
// element of class `expected`; `description` says what was expected ("a string").
Hid open_attr(const ShardFile& shard, const char* name, H5T_class_t expected, const char* description) {
  const std::string where = std::string("attribute '") + name + "'";
  if (!has_attr(shard, name)) fail(shard.path, where + " is missing");
  Hid attr(H5Aopen(shard.file.get(), name, H5P_DEFAULT), H5Aclose);
  if (!attr.valid()) fail_hdf5(shard.path, "opening " + where + " failed");
  Hid type(H5Aget_type(attr.get()), H5Tclose);
  Hid space(H5Aget_space(attr.get()), H5Sclose);
  if (!type.valid() || !space.valid()) fail_hdf5(shard.path, "inspecting " + where + " failed");
  if (H5Tget_class(type.get()) != expected || H5Sget_simple_extent_npoints(space.get()) != 1) {
    fail(shard.path, where + " is not " + description);
  }
  return attr;
}

std::string read_string_attr(const ShardFile& shard, const char* name) {
  const std::string step = std::string("reading attribute '") + name + "' failed";
  Hid attr = open_attr(shard, name, H5T_STRING, "a single string");
  Hid file_type(H5Aget_type(attr.get()), H5Tclose);
  if (!file_type.valid()) fail_hdf5(shard.path, step);
  const H5T_cset_t cset = H5Tget_cset(file_type.get());
  const htri_t variable = H5Tis_variable_str(file_type.get());
  if (cset < 0 || variable < 0) fail_hdf5(shard.path, step);

  if (variable > 0) {
    Hid mem_type = make_vlen_string_type(shard.path, cset);
    Hid mem_space(H5Screate(H5S_SCALAR), H5Sclose);
    if (!mem_space.valid()) fail_hdf5(shard.path, step);
    VlenStrings value(mem_type.get(), mem_space.get(), 1);
    if (H5Aread(attr.get(), mem_type.get(), value.ptrs.data()) < 0) fail_hdf5(shard.path, step);
    return value.ptrs[0] ? std::string(value.ptrs[0]) : std::string();
  }

  // Fixed-length string (files written by other tools); cut at the first NUL.
  const std::size_t size = H5Tget_size(file_type.get());
  if (size == 0 || size > (1u << 20)) fail(shard.path, step + " (unreasonable string size)");
  Hid mem_type(H5Tcopy(file_type.get()), H5Tclose);
  if (!mem_type.valid()) fail_hdf5(shard.path, step);
  std::vector<char> buffer(size + 1, '\0');  // [size] bytes + terminator
  if (H5Aread(attr.get(), mem_type.get(), buffer.data()) < 0) fail_hdf5(shard.path, step);
  return std::string(buffer.data());
}

// Integer attribute converted to `mem_type` (NATIVE_INT64 or NATIVE_UINT64) into `out`.
void read_integer_attr(const ShardFile& shard, const char* name, hid_t mem_type, void* out) {
  Hid attr = open_attr(shard, name, H5T_INTEGER, "a single integer");
  if (H5Aread(attr.get(), mem_type, out) < 0) {
    fail_hdf5(shard.path, std::string("reading attribute '") + name + "' failed");
  }
}

std::int32_t read_int32_attr(const ShardFile& shard, const char* name) {
  std::int64_t value = 0;
  read_integer_attr(shard, name, H5T_NATIVE_INT64, &value);
  if (value < std::numeric_limits<std::int32_t>::min() || value > std::numeric_limits<std::int32_t>::max()) {
    fail(shard.path, std::string("attribute '") + name + "' = " + std::to_string(value) +
                         " does not fit in int32");
  }
  return static_cast<std::int32_t>(value);
}

// `format`, then `schema_version`, then the other attributes.
ShardMeta read_meta(const ShardFile& shard) {
  const std::string expected = std::string("; expected \"") + kFormat + "\")";
  if (!has_attr(shard, "format")) {
    fail(shard.path, std::string("not an align2 shard (the file has no 'format' attribute") + expected);
  }
  {
    Hid attr(H5Aopen(shard.file.get(), "format", H5P_DEFAULT), H5Aclose);
    if (!attr.valid()) fail_hdf5(shard.path, "opening attribute 'format' failed");
    Hid type(H5Aget_type(attr.get()), H5Tclose);
    if (!type.valid()) fail_hdf5(shard.path, "inspecting attribute 'format' failed");
    if (H5Tget_class(type.get()) != H5T_STRING) {
      fail(shard.path, std::string("not an align2 shard ('format' attribute is not a string") + expected);
    }
  }
  const std::string format = read_string_attr(shard, "format");
  if (format != kFormat) {
    fail(shard.path, "not an align2 shard (format is \"" + format + "\"" + expected);
  }

  ShardMeta meta;
  meta.schema_version = read_int32_attr(shard, "schema_version");
  if (meta.schema_version != kShardSchemaVersion) {
    fail(shard.path, "shard schema_version " + std::to_string(meta.schema_version) +
                         " is not supported by this align2 (supports " + std::to_string(kShardSchemaVersion) +
                         "); re-run the stage or upgrade align2");
  }
  meta.align2_version = read_string_attr(shard, "align2_version");
  meta.config_fingerprint = read_string_attr(shard, "config_fingerprint");
  meta.input_fingerprint = read_string_attr(shard, "input_fingerprint");
  meta.stage = read_string_attr(shard, "stage");
  meta.rank = read_int32_attr(shard, "rank");
  meta.world_size = read_int32_attr(shard, "world_size");
  read_integer_attr(shard, "input_records", H5T_NATIVE_UINT64, &meta.input_records);
  meta.stage_summary_json = read_string_attr(shard, "stage_summary_json");
  meta.timings_json = read_string_attr(shard, "timings_json");
  return meta;
}

// One open 1-D dataset and its length (elements).
struct Column {
  std::string name;
  Hid dset;
  hsize_t length = 0;
};

// Opens dataset `name`: must be 1-D, of class `expected` (strings: variable-length),
// and no longer than the file could hold.
Column open_column(const ShardFile& shard, const char* name, H5T_class_t expected) {
  Column column;
  column.name = name;
  const std::string where = std::string("dataset '") + name + "'";
  htri_t exists = H5Lexists(shard.file.get(), name, H5P_DEFAULT);
  if (exists < 0) fail_hdf5(shard.path, "looking up " + where + " failed");
  if (exists == 0) fail(shard.path, where + " is missing");
  column.dset = Hid(H5Dopen2(shard.file.get(), name, H5P_DEFAULT), H5Dclose);
  if (!column.dset.valid()) fail_hdf5(shard.path, "opening " + where + " failed (is it a dataset?)");

  Hid type(H5Dget_type(column.dset.get()), H5Tclose);
  Hid space(H5Dget_space(column.dset.get()), H5Sclose);
  if (!type.valid() || !space.valid()) fail_hdf5(shard.path, "inspecting " + where + " failed");
  if (H5Tget_class(type.get()) != expected) fail(shard.path, where + " has the wrong element type");
  if (expected == H5T_STRING && H5Tis_variable_str(type.get()) <= 0) {
    fail(shard.path, where + " does not hold variable-length strings");
  }
  if (H5Sget_simple_extent_type(space.get()) != H5S_SIMPLE || H5Sget_simple_extent_ndims(space.get()) != 1) {
    fail(shard.path, where + " is not one-dimensional");
  }
  if (H5Sget_simple_extent_dims(space.get(), &column.length, nullptr) < 0) {
    fail_hdf5(shard.path, "reading the length of " + where + " failed");
  }

  // Each stored element takes at least `element_bytes` before compression
  // (variable-length strings: a 16-byte heap reference, counted as 8).
  hsize_t element_bytes = std::min<hsize_t>(8, H5Tget_size(type.get()));
  if (element_bytes == 0) element_bytes = 1;
  // file_size * 1032 cannot overflow for files below 16 PiB.
  const hsize_t max_length = shard.file_size * kMaxDeflateRatio / element_bytes;
  if (column.length > max_length) {
    fail(shard.path, where + " claims " + std::to_string(column.length) + " elements, more than a " +
                         std::to_string(shard.file_size) + "-byte file can hold");
  }
  return column;
}

void expect_length(const ShardFile& shard, const Column& column, hsize_t expected, const char* rule) {
  if (column.length != expected) {
    fail(shard.path, "dataset '" + column.name + "' has " + std::to_string(column.length) +
                         " elements, expected " + std::to_string(expected) + " (" + rule + ")");
  }
}

// Reads all of a fixed-size column into `out` ([column.length] elements of `mem_type`).
void read_fixed(const ShardFile& shard, const Column& column, hid_t mem_type, void* out) {
  if (column.length == 0) return;
  if (H5Dread(column.dset.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) {
    fail_hdf5(shard.path, "reading dataset '" + column.name + "' failed");
  }
}

// Reads the elements of a string column at `positions` (ascending is fastest) and
// appends them to `out` in the same order, in blocks of kStringReadBlock.
// positions == nullptr reads the whole column [0, column.length).
void read_strings(const ShardFile& shard, const Column& column, const hsize_t* positions, hsize_t count,
                  std::vector<std::string>& out) {
  const std::string step = "reading dataset '" + column.name + "' failed";
  Hid mem_type = make_vlen_string_type(shard.path);
  Hid file_space(H5Dget_space(column.dset.get()), H5Sclose);
  if (!file_space.valid()) fail_hdf5(shard.path, step);
  out.reserve(out.size() + count);
  for (hsize_t start = 0; start < count; start += kStringReadBlock) {
    const hsize_t block = std::min(kStringReadBlock, count - start);
    herr_t selected = positions == nullptr
        ? H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, &start, nullptr, &block, nullptr)
        : H5Sselect_elements(file_space.get(), H5S_SELECT_SET, block, positions + start);
    if (selected < 0) fail_hdf5(shard.path, step + " (selecting rows)");
    Hid mem_space = make_space_1d(shard.path, block);
    VlenStrings strings(mem_type.get(), mem_space.get(), block);
    if (H5Dread(column.dset.get(), mem_type.get(), mem_space.get(), file_space.get(), H5P_DEFAULT,
                strings.ptrs.data()) < 0) {
      fail_hdf5(shard.path, step);
    }
    for (const char* s : strings.ptrs) out.emplace_back(s ? s : "");
  }
}

// Reads an offsets column ([n + 1] uint64) and checks it starts at 0, never
// decreases and ends at `values_length`.
std::vector<std::uint64_t> read_offsets(const ShardFile& shard, const char* name, hsize_t n,
                                        hsize_t values_length, const char* values_name) {
  Column column = open_column(shard, name, H5T_INTEGER);
  expect_length(shard, column, n + 1, "one more than the rows");
  std::vector<std::uint64_t> offsets(column.length);
  read_fixed(shard, column, H5T_NATIVE_UINT64, offsets.data());
  const std::string where = std::string("dataset '") + name + "'";
  if (offsets[0] != 0) fail(shard.path, where + " does not start at 0");
  for (hsize_t i = 0; i < n; ++i) {
    if (offsets[i + 1] < offsets[i]) {
      fail(shard.path, where + " decreases at row " + std::to_string(i));
    }
    if (offsets[i + 1] > values_length) {
      fail(shard.path, where + " points past the end of '" + values_name + "' at row " + std::to_string(i));
    }
  }
  if (offsets[n] != values_length) {
    fail(shard.path, where + " ends at " + std::to_string(offsets[n]) + " but '" + values_name + "' has " +
                         std::to_string(values_length) + " elements");
  }
  return offsets;
}

}  // namespace

// ---------------------------------------------------------------------------
// Public functions

void write_shard(const std::string& path, const ShardMeta& meta, const std::vector<ShardRow>& rows) {
  check_rows(path, meta, rows);  // std::invalid_argument before anything touches the disk
  ErrorPrintingOff quiet;

  const fs::path parent = fs::path(path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    fs::create_directories(parent, ec);
    if (ec) fail(path, "creating parent folder " + parent.string() + " failed: " + ec.message());
  }

  const std::string tmp_path = path + ".tmp-" + std::to_string(::getpid());
  try {
    write_shard_file(path, tmp_path, meta, rows);
    fsync_path(path, tmp_path, false);
    if (std::rename(tmp_path.c_str(), path.c_str()) != 0) {
      fail(path, "renaming " + tmp_path + " over it failed: " + std::strerror(errno));
    }
  } catch (...) {
    std::error_code ignored;
    fs::remove(tmp_path, ignored);
    throw;
  }
  // The rename is done; making it durable is best effort (the file is in place either way).
  try {
    fsync_path(path, parent.empty() ? std::string(".") : parent.string(), true);
  } catch (const std::runtime_error&) {
  }
}

ShardMeta read_shard_meta(const std::string& path) {
  ErrorPrintingOff quiet;
  ShardFile shard = open_shard_file(path);
  return read_meta(shard);
}

ShardData read_shard(const std::string& path, const ShardReadOptions& options) {
  ErrorPrintingOff quiet;
  ShardFile shard = open_shard_file(path);
  ShardData data;
  data.meta = read_meta(shard);

  // `index` fixes the row count n; every per-row column must have n elements.
  Column index = open_column(shard, "index", H5T_INTEGER);
  const hsize_t n = index.length;
  std::vector<std::uint64_t> index_values(n);
  read_fixed(shard, index, H5T_NATIVE_UINT64, index_values.data());
  data.rows.resize(n);
  for (hsize_t i = 0; i < n; ++i) data.rows[i].index = index_values[i];
  index_values = {};

  auto read_text_column = [&](const char* name, std::string ShardRow::*field, bool read) {
    Column column = open_column(shard, name, H5T_STRING);
    expect_length(shard, column, n, "one per row");
    if (!read) return;
    std::vector<std::string> values;
    read_strings(shard, column, nullptr, n, values);
    for (hsize_t i = 0; i < n; ++i) data.rows[i].*field = std::move(values[i]);
  };
  read_text_column("key", &ShardRow::key, true);
  read_text_column("id", &ShardRow::id, true);
  read_text_column("subset", &ShardRow::subset, true);
  read_text_column("status", &ShardRow::status, true);
  read_text_column("reason", &ShardRow::reason, true);
  read_text_column("message", &ShardRow::message, true);
  read_text_column("image", &ShardRow::image, true);
  read_text_column("record", &ShardRow::record, options.records);

  auto read_double_column = [&](const char* name, double ShardRow::*field) {
    Column column = open_column(shard, name, H5T_FLOAT);
    expect_length(shard, column, n, "one per row");
    std::vector<double> values(n);  // [n]
    read_fixed(shard, column, H5T_NATIVE_DOUBLE, values.data());
    for (hsize_t i = 0; i < n; ++i) data.rows[i].*field = values[i];
  };
  read_double_column("question_score", &ShardRow::question_score);
  read_double_column("answer_score", &ShardRow::answer_score);

  auto read_int8_column = [&](const char* name, std::int8_t ShardRow::*field) {
    Column column = open_column(shard, name, H5T_INTEGER);
    expect_length(shard, column, n, "one per row");
    std::vector<std::int8_t> values(n);  // [n]
    read_fixed(shard, column, H5T_NATIVE_INT8, values.data());
    for (hsize_t i = 0; i < n; ++i) data.rows[i].*field = values[i];
  };
  read_int8_column("selected_questions", &ShardRow::selected_questions);
  read_int8_column("selected_answers", &ShardRow::selected_answers);
  read_int8_column("kept", &ShardRow::kept);
  read_int8_column("truncated", &ShardRow::truncated);

  {
    Column column = open_column(shard, "global_rank", H5T_INTEGER);
    expect_length(shard, column, n, "one per row");
    std::vector<std::int64_t> values(n);  // [n]
    read_fixed(shard, column, H5T_NATIVE_INT64, values.data());
    for (hsize_t i = 0; i < n; ++i) data.rows[i].global_rank = values[i];
  }

  {
    Column scores = open_column(shard, "answer_scores", H5T_FLOAT);
    std::vector<std::uint64_t> offsets =
        read_offsets(shard, "answer_scores_offsets", n, scores.length, "answer_scores");
    std::vector<float> values(scores.length);  // [total turns], row i: [offsets[i], offsets[i+1])
    read_fixed(shard, scores, H5T_NATIVE_FLOAT, values.data());
    for (hsize_t i = 0; i < n; ++i) {
      data.rows[i].answer_scores.assign(values.begin() + offsets[i], values.begin() + offsets[i + 1]);
    }
  }

  {
    Column questions = open_column(shard, "rewritten_questions", H5T_STRING);
    Column answers = open_column(shard, "rewritten_answers", H5T_STRING);
    expect_length(shard, answers, questions.length, "as many as rewritten_questions");
    std::vector<std::uint64_t> offsets =
        read_offsets(shard, "rewritten_offsets", n, questions.length, "rewritten_questions");
    std::vector<std::string> q, a;  // [total turns] each
    read_strings(shard, questions, nullptr, questions.length, q);
    read_strings(shard, answers, nullptr, answers.length, a);
    for (hsize_t i = 0; i < n; ++i) {
      ShardRow& row = data.rows[i];
      row.rewritten_questions.assign(std::make_move_iterator(q.begin() + offsets[i]),
                                     std::make_move_iterator(q.begin() + offsets[i + 1]));
      row.rewritten_answers.assign(std::make_move_iterator(a.begin() + offsets[i]),
                                   std::make_move_iterator(a.begin() + offsets[i + 1]));
    }
  }
  return data;
}

std::vector<std::string> read_shard_records(const std::string& path, const std::vector<std::uint64_t>& rows) {
  ErrorPrintingOff quiet;
  ShardFile shard = open_shard_file(path);
  read_meta(shard);
  Column record = open_column(shard, "record", H5T_STRING);
  for (std::uint64_t row : rows) {
    if (row >= record.length) {
      fail(path, "read_shard_records: row " + std::to_string(row) + " is out of range (the shard has " +
                     std::to_string(record.length) + " rows)");
    }
  }

  // Read in ascending row order (each compressed chunk is then inflated once),
  // then put the strings back in the order asked.
  std::vector<std::size_t> order(rows.size());  // [k] positions into `rows`, sorted by row
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return rows[a] < rows[b]; });
  std::vector<hsize_t> positions(rows.size());  // [k] file rows, ascending
  for (std::size_t i = 0; i < order.size(); ++i) positions[i] = rows[order[i]];

  std::vector<std::string> sorted;
  read_strings(shard, record, positions.data(), positions.size(), sorted);
  std::vector<std::string> result(rows.size());
  for (std::size_t i = 0; i < order.size(); ++i) result[order[i]] = std::move(sorted[i]);
  return result;
}

ShardRow sample_row(const Sample& s) {
  ShardRow row;
  row.index = s.index;
  row.key = s.key;
  row.id = printable_text(s.id);
  row.subset = printable_text(s.subset);
  row.status = status_name(s.status);
  row.reason = reason_name(s.reason);
  row.message = printable_text(s.message);
  row.image = printable_text(s.image);
  row.record = printable_text(s.raw);  // valid records are UTF-8 without NUL: verbatim
  return row;
}

}  // namespace align2
