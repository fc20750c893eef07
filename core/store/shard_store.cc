// HDF5 shard store. The contract is core/store/shard_store.h; the on-disk layout is
// documented in docs/hdf5-schema.md (keep the two in step).
//
// Everything here uses the HDF5 C API directly. Every hid_t lives in exactly one
// Hid owner, so handles are closed on every path, including exceptions. Errors
// are reported as std::runtime_error naming the file and the failing step; HDF5's
// own error-stack printing is switched off while these functions run and the
// innermost HDF5 error message is copied into the exception instead.
#include "core/store/shard_store.h"

#include "core/data/record_validation.h"
#include "core/data/sample.h"

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
#include <type_traits>
#include <utility>

namespace fs = std::filesystem;

namespace align2 {
namespace {

constexpr const char* kFormat = "align2-shard";  // value of the root attribute `format`

// Chunk length (elements along the single dimension) of every dataset: min(expected
// rows, 4096), at least 1 (HDF5 refuses 0). write_shard knows its rows exactly; a
// ShardWriter is told them or uses 4096.
constexpr hsize_t kChunkRows = 4096;
constexpr unsigned kDeflateLevel = 4;

// Rows converted per H5Dread when reading variable-length strings, so HDF5's own
// copies of the strings never hold more than one block at a time.
constexpr hsize_t kStringReadBlock = 65536;

// HDF5's caches are sized so that memory does not grow with the file (HDF5's defaults
// would keep up to 1 MiB of chunks per dataset and let the metadata cache, which also
// holds the heap collections of variable-length strings, grow to 32 MiB per file).
// Rows are written and read in order, so a chunk is needed again only while it is being
// filled, or read across a block boundary: a string chunk is 4096 16-byte heap references
// (64 KiB). The metadata cache has a fixed size.
constexpr std::size_t kReadChunkCacheBytes = 128 << 10;
constexpr std::size_t kWriteChunkCacheBytes = 256 << 10;
constexpr std::size_t kChunkCacheSlots = 101;  // a prime, several times the chunks that fit
constexpr std::size_t kMetadataCacheBytes = 1 << 20;

// zlib's deflate cannot compress better than about 1032:1, so a dataset of n
// elements of s bytes each needs at least n*s/1032 bytes of file. Lengths read
// from a file are checked against this before anything is allocated for them.
constexpr hsize_t kMaxDeflateRatio = 1032;

// A file whose H5Fcreate or H5Fclose failed half-way (disk full) stays half-open inside HDF5,
// and HDF5's own cleanup at exit then loops ("infinite loop closing library") or crashes
// (1.10: SIGSEGV in H5F__close_cb) after the error was reported, turning exit code 1 into 139.
// Every file align2 keeps is closed explicitly before it is renamed into place, so that cleanup
// has nothing to save: it is switched off before the library first initializes.
const bool kHdf5CleanupAtExitOff = [] { return H5dont_atexit() >= 0; }();

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

// File access properties of every file opened or created here. SEMI: H5Fclose fails
// instead of silently staying open if a handle leaked. Library version bounds stay at
// their default (earliest) so old readers work. A metadata cache of fixed size.
Hid make_file_access_properties(const std::string& path) {
  Hid fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  if (!fapl.valid() || H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_SEMI) < 0) {
    fail_hdf5(path, "setting file access properties failed");
  }
  H5AC_cache_config_t config;
  config.version = H5AC__CURR_CACHE_CONFIG_VERSION;
  if (H5Pget_mdc_config(fapl.get(), &config) < 0) fail_hdf5(path, "reading the metadata cache settings failed");
  config.set_initial_size = true;
  config.initial_size = kMetadataCacheBytes;
  config.min_size = kMetadataCacheBytes;
  config.max_size = kMetadataCacheBytes;
  config.incr_mode = H5C_incr__off;
  config.flash_incr_mode = H5C_flash_incr__off;
  config.decr_mode = H5C_decr__off;
  if (H5Pset_mdc_config(fapl.get(), &config) < 0) fail_hdf5(path, "setting the metadata cache size failed");
  return fapl;
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

void check_meta(const std::string& path, const ShardMeta& meta) {
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
}

// `first_row`: the file row of rows[0] (messages name file rows).
void check_rows(const std::string& path, const std::vector<ShardRow>& rows, std::uint64_t first_row) {
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const ShardRow& row = rows[i];
    const std::string where =
        "row " + std::to_string(first_row + i) + " (index " + std::to_string(row.index) + ")";
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
    check_no_nul(path, row.message, where + " column message");
    check_no_nul(path, row.image, where + " column image");
    check_no_nul(path, row.record, where + " column record");
    for (const std::string& s : row.rewritten_questions) check_no_nul(path, s, where + " rewritten_questions");
    for (const std::string& s : row.rewritten_answers) check_no_nul(path, s, where + " rewritten_answers");
    for (const std::string& s : row.rewrite_replies) check_no_nul(path, s, where + " rewrite_replies");
    for (const std::string& s : row.rewrite_reasons) check_no_nul(path, s, where + " rewrite_reasons");
    const std::size_t turns = row.rewritten_questions.size();
    if (row.rewrite_replies.size() != turns || row.rewrite_reasons.size() != turns ||
        row.rewrite_kept.size() != turns || row.review_p.size() != turns || row.review_p_order1.size() != turns ||
        row.review_p_order2.size() != turns)
      throw std::invalid_argument(path + ": " + where + ": the per-turn rewrite columns must all have " +
                                  std::to_string(turns) + " entries (one per rewritten turn)");
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

// The datasets of a shard, in the order they are created in the file.
enum ColumnId {
  kIndex, kKey, kId, kSubset, kStatus, kReason, kMessage, kImage, kRecord,
  kQuestionScore, kAnswerScore, kSelectedQuestions, kSelectedAnswers, kKept, kTruncated, kGlobalRank,
  kAnswerScores, kAnswerScoresOffsets, kRewrittenQuestions, kRewrittenAnswers, kRewrittenOffsets,
  kRewriteReplies, kRewriteReasons, kRewriteKept, kReviewP, kReviewPOrder1, kReviewPOrder2,
  kColumnCount
};

struct ColumnSpec {
  const char* name;
  H5T_class_t type_class;  // what readers require
  hid_t file_type;         // little-endian numeric type; -1: variable-length UTF-8 string
  hid_t mem_type;          // native type of the values in memory; -1: string
  bool shuffle;            // byte-shuffle filter before deflate (multi-byte numbers)
};

// Indexed by ColumnId. (Function, not a table at namespace scope: H5T_* ids are only
// valid once the library is initialised.)
ColumnSpec column_spec(int id) {
  switch (id) {
    case kIndex: return {"index", H5T_INTEGER, H5T_STD_U64LE, H5T_NATIVE_UINT64, true};
    case kKey: return {"key", H5T_STRING, -1, -1, false};
    case kId: return {"id", H5T_STRING, -1, -1, false};
    case kSubset: return {"subset", H5T_STRING, -1, -1, false};
    case kStatus: return {"status", H5T_STRING, -1, -1, false};
    case kReason: return {"reason", H5T_STRING, -1, -1, false};
    case kMessage: return {"message", H5T_STRING, -1, -1, false};
    case kImage: return {"image", H5T_STRING, -1, -1, false};
    case kRecord: return {"record", H5T_STRING, -1, -1, false};
    case kQuestionScore: return {"question_score", H5T_FLOAT, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, true};
    case kAnswerScore: return {"answer_score", H5T_FLOAT, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, true};
    case kSelectedQuestions: return {"selected_questions", H5T_INTEGER, H5T_STD_I8LE, H5T_NATIVE_INT8, false};
    case kSelectedAnswers: return {"selected_answers", H5T_INTEGER, H5T_STD_I8LE, H5T_NATIVE_INT8, false};
    case kKept: return {"kept", H5T_INTEGER, H5T_STD_I8LE, H5T_NATIVE_INT8, false};
    case kTruncated: return {"truncated", H5T_INTEGER, H5T_STD_I8LE, H5T_NATIVE_INT8, false};
    case kGlobalRank: return {"global_rank", H5T_INTEGER, H5T_STD_I64LE, H5T_NATIVE_INT64, true};
    case kAnswerScores: return {"answer_scores", H5T_FLOAT, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, true};
    case kAnswerScoresOffsets:
      return {"answer_scores_offsets", H5T_INTEGER, H5T_STD_U64LE, H5T_NATIVE_UINT64, true};
    case kRewrittenQuestions: return {"rewritten_questions", H5T_STRING, -1, -1, false};
    case kRewrittenAnswers: return {"rewritten_answers", H5T_STRING, -1, -1, false};
    case kRewrittenOffsets: return {"rewritten_offsets", H5T_INTEGER, H5T_STD_U64LE, H5T_NATIVE_UINT64, true};
    case kRewriteReplies: return {"rewrite_replies", H5T_STRING, -1, -1, false};
    case kRewriteReasons: return {"rewrite_reasons", H5T_STRING, -1, -1, false};
    case kRewriteKept: return {"rewrite_kept", H5T_INTEGER, H5T_STD_I8LE, H5T_NATIVE_INT8, false};
    case kReviewP: return {"review_p", H5T_FLOAT, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, true};
    case kReviewPOrder1: return {"review_p_order1", H5T_FLOAT, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, true};
    case kReviewPOrder2: return {"review_p_order2", H5T_FLOAT, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, true};
    default: throw std::logic_error("shard_store: unknown column id");
  }
}

// One dataset being written and its current length (elements).
struct OutColumn {
  const char* name = nullptr;
  Hid dset;
  hid_t mem_type = H5I_INVALID_HID;  // borrowed (native type or the writer's string type)
  hsize_t length = 0;
};

// Creates the empty 1-D dataset `name` of `file_type`: chunked (`chunk` elements),
// deflated, extendible without limit, no timestamps.
Hid create_column(const std::string& path, hid_t file, const char* name, hid_t file_type, hsize_t chunk,
                  bool shuffle) {
  const std::string step = std::string("creating dataset '") + name + "' failed";
  const hsize_t length = 0;
  const hsize_t max_length = H5S_UNLIMITED;  // lets the chunked layout hold 0 elements and grow
  Hid space(H5Screate_simple(1, &length, &max_length), H5Sclose);
  if (!space.valid()) fail_hdf5(path, step);
  Hid dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  if (!dcpl.valid() || H5Pset_chunk(dcpl.get(), 1, &chunk) < 0 ||
      (shuffle && H5Pset_shuffle(dcpl.get()) < 0) || H5Pset_deflate(dcpl.get(), kDeflateLevel) < 0 ||
      H5Pset_obj_track_times(dcpl.get(), false) < 0) {
    fail_hdf5(path, step + " (dataset creation properties)");
  }
  // Chunk cache: enough for the chunk being filled and the one before it, whatever the
  // file's size (HDF5's default, 1 MiB per dataset, would keep up to 1 MiB per column).
  Hid dapl(H5Pcreate(H5P_DATASET_ACCESS), H5Pclose);
  if (!dapl.valid() || H5Pset_chunk_cache(dapl.get(), kChunkCacheSlots, kWriteChunkCacheBytes, 1.0) < 0) {
    fail_hdf5(path, step + " (dataset access properties)");
  }
  Hid dset(H5Dcreate2(file, name, file_type, space.get(), H5P_DEFAULT, dcpl.get(), dapl.get()), H5Dclose);
  if (!dset.valid()) fail_hdf5(path, step);
  return dset;
}

// Appends `count` elements of column.mem_type at `data` to the end of the column.
void append_column(const std::string& path, OutColumn& column, const void* data, hsize_t count) {
  if (count == 0) return;
  const std::string step = std::string("writing dataset '") + column.name + "' failed";
  const hsize_t start = column.length;
  const hsize_t new_length = start + count;
  if (H5Dset_extent(column.dset.get(), &new_length) < 0) fail_hdf5(path, step + " (extending it)");
  Hid file_space(H5Dget_space(column.dset.get()), H5Sclose);
  if (!file_space.valid() ||
      H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, &start, nullptr, &count, nullptr) < 0) {
    fail_hdf5(path, step + " (selecting rows)");
  }
  Hid mem_space = make_space_1d(path, count);
  if (H5Dwrite(column.dset.get(), column.mem_type, mem_space.get(), file_space.get(), H5P_DEFAULT, data) < 0) {
    fail_hdf5(path, step);
  }
  column.length = new_length;
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
  Hid fapl = make_file_access_properties(path);
  shard.file = Hid(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()), H5Fclose);
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
  Hid dapl(H5Pcreate(H5P_DATASET_ACCESS), H5Pclose);
  if (!dapl.valid() || H5Pset_chunk_cache(dapl.get(), kChunkCacheSlots, kReadChunkCacheBytes, 1.0) < 0) {
    fail_hdf5(shard.path, "opening " + where + " failed (dataset access properties)");
  }
  column.dset = Hid(H5Dopen2(shard.file.get(), name, dapl.get()), H5Dclose);
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

// Reads elements [begin, begin + count) of a fixed-size column into `out` (`count`
// elements of `mem_type`). The range must lie within the column.
void read_fixed(const ShardFile& shard, const Column& column, hid_t mem_type, hsize_t begin, hsize_t count,
                void* out) {
  if (count == 0) return;
  const std::string step = "reading dataset '" + column.name + "' failed";
  Hid file_space(H5Dget_space(column.dset.get()), H5Sclose);
  if (!file_space.valid() ||
      H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, &begin, nullptr, &count, nullptr) < 0) {
    fail_hdf5(shard.path, step + " (selecting rows)");
  }
  Hid mem_space = make_space_1d(shard.path, count);
  if (H5Dread(column.dset.get(), mem_type, mem_space.get(), file_space.get(), H5P_DEFAULT, out) < 0) {
    fail_hdf5(shard.path, step);
  }
}

// Reads string elements of a column and appends them to `out`, in blocks of
// kStringReadBlock: the elements at `positions` (ascending is fastest), or, when
// positions == nullptr, the elements [begin, begin + count).
void read_strings(const ShardFile& shard, const Column& column, const hsize_t* positions, hsize_t begin,
                  hsize_t count, std::vector<std::string>& out) {
  const std::string step = "reading dataset '" + column.name + "' failed";
  Hid mem_type = make_vlen_string_type(shard.path);
  Hid file_space(H5Dget_space(column.dset.get()), H5Sclose);
  if (!file_space.valid()) fail_hdf5(shard.path, step);
  out.reserve(out.size() + count);
  for (hsize_t done = 0; done < count; done += kStringReadBlock) {
    const hsize_t block = std::min(kStringReadBlock, count - done);
    const hsize_t start = begin + done;
    herr_t selected = positions == nullptr
        ? H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, &start, nullptr, &block, nullptr)
        : H5Sselect_elements(file_space.get(), H5S_SELECT_SET, block, positions + done);
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

// Reads entries [begin, end] of an offsets column of n + 1 entries (rows [begin, end))
// and checks them: the column starts at 0, never decreases within the range, points
// no further than `values_length` and ends at `values_length` (entries 0 and n are read
// for that when outside the range). Messages name file rows.
std::vector<std::uint64_t> read_offsets(const ShardFile& shard, const Column& column, hsize_t n, hsize_t begin,
                                        hsize_t end, hsize_t values_length, const char* values_name) {
  std::vector<std::uint64_t> offsets(end - begin + 1);  // offsets[i - begin] for i in [begin, end]
  read_fixed(shard, column, H5T_NATIVE_UINT64, begin, offsets.size(), offsets.data());
  const std::string where = "dataset '" + column.name + "'";
  std::uint64_t first = offsets.front();
  if (begin != 0) read_fixed(shard, column, H5T_NATIVE_UINT64, 0, 1, &first);
  if (first != 0) fail(shard.path, where + " does not start at 0");
  for (hsize_t i = begin; i < end; ++i) {
    if (offsets[i + 1 - begin] < offsets[i - begin]) {
      fail(shard.path, where + " decreases at row " + std::to_string(i));
    }
    if (offsets[i + 1 - begin] > values_length) {
      fail(shard.path, where + " points past the end of '" + values_name + "' at row " + std::to_string(i));
    }
  }
  std::uint64_t last = offsets.back();
  if (end != n) read_fixed(shard, column, H5T_NATIVE_UINT64, n, 1, &last);
  if (last != values_length) {
    fail(shard.path, where + " ends at " + std::to_string(last) + " but '" + values_name + "' has " +
                         std::to_string(values_length) + " elements");
  }
  return offsets;
}

}  // namespace

// ---------------------------------------------------------------------------
// ShardWriter

struct ShardWriter::Impl {
  enum class State { open, committed, failed };

  std::string path;
  std::string tmp_path;
  std::string parent;                      // folder that receives the rename ("." when none)
  Hid file;
  Hid string_type;                         // variable-length UTF-8, the memory type of string columns
  std::vector<OutColumn> columns;          // [kColumnCount], by ColumnId
  std::uint64_t rows = 0;                  // rows appended so far
  State state = State::open;

  ~Impl() {
    columns.clear();  // datasets first: with H5F_CLOSE_SEMI the file closes only without open objects
    string_type.close();
    file.close();
    if (state != State::committed && !tmp_path.empty()) {
      std::error_code ignored;
      fs::remove(tmp_path, ignored);
    }
  }

  void require_open(const char* what) const {
    if (state == State::committed) throw std::logic_error("ShardWriter " + path + ": " + what + " after commit");
    if (state == State::failed) fail(path, std::string(what) + " refused: an earlier write to this shard failed");
  }

  void append(const std::vector<ShardRow>& block) {
    const std::size_t k = block.size();
    if (k == 0) return;

    std::vector<std::uint64_t> index(k);
    std::vector<double> question_score(k), answer_score(k);
    std::vector<std::int8_t> selected_questions(k), selected_answers(k), kept(k), truncated(k);
    std::vector<std::int64_t> global_rank(k);
    for (std::size_t i = 0; i < k; ++i) {
      const ShardRow& row = block[i];
      index[i] = row.index;
      question_score[i] = row.question_score;
      answer_score[i] = row.answer_score;
      selected_questions[i] = row.selected_questions;
      selected_answers[i] = row.selected_answers;
      kept[i] = row.kept;
      truncated[i] = row.truncated;
      global_rank[i] = row.global_rank;
    }
    append_column(path, columns[kIndex], index.data(), k);

    std::vector<const char*> text(k);  // [k] borrowed pointers into `block`
    auto write_text = [&](int id, std::string ShardRow::*field) {
      for (std::size_t i = 0; i < k; ++i) text[i] = (block[i].*field).c_str();
      append_column(path, columns[std::size_t(id)], text.data(), k);
    };
    write_text(kKey, &ShardRow::key);
    write_text(kId, &ShardRow::id);
    write_text(kSubset, &ShardRow::subset);
    for (std::size_t i = 0; i < k; ++i) text[i] = status_name(block[i].status);
    append_column(path, columns[kStatus], text.data(), k);
    for (std::size_t i = 0; i < k; ++i) text[i] = reason_name(block[i].reason);
    append_column(path, columns[kReason], text.data(), k);
    write_text(kMessage, &ShardRow::message);
    write_text(kImage, &ShardRow::image);
    write_text(kRecord, &ShardRow::record);

    append_column(path, columns[kQuestionScore], question_score.data(), k);
    append_column(path, columns[kAnswerScore], answer_score.data(), k);
    append_column(path, columns[kSelectedQuestions], selected_questions.data(), k);
    append_column(path, columns[kSelectedAnswers], selected_answers.data(), k);
    append_column(path, columns[kKept], kept.data(), k);
    append_column(path, columns[kTruncated], truncated.data(), k);
    append_column(path, columns[kGlobalRank], global_rank.data(), k);

    // Ragged columns: the values of this block, and offsets continuing the file's.
    std::vector<float> scores;
    std::vector<std::uint64_t> score_offsets(k);  // [k] end of each row's values in the file
    std::uint64_t score_end = columns[kAnswerScores].length;
    for (std::size_t i = 0; i < k; ++i) {
      scores.insert(scores.end(), block[i].answer_scores.begin(), block[i].answer_scores.end());
      score_offsets[i] = score_end + scores.size();
    }
    append_column(path, columns[kAnswerScores], scores.data(), scores.size());
    append_column(path, columns[kAnswerScoresOffsets], score_offsets.data(), k);

    std::vector<const char*> questions, answers, replies, reasons;  // [turns] borrowed pointers into `block`
    std::vector<std::int8_t> rewrite_kept;                          // [turns]
    std::vector<float> review_p, review_p1, review_p2;              // [turns]
    std::vector<std::uint64_t> rewritten_offsets(k);
    std::uint64_t rewritten_end = columns[kRewrittenQuestions].length;
    for (std::size_t i = 0; i < k; ++i) {
      const ShardRow& row = block[i];
      for (const std::string& s : row.rewritten_questions) questions.push_back(s.c_str());
      for (const std::string& s : row.rewritten_answers) answers.push_back(s.c_str());
      for (const std::string& s : row.rewrite_replies) replies.push_back(s.c_str());
      for (const std::string& s : row.rewrite_reasons) reasons.push_back(s.c_str());
      rewrite_kept.insert(rewrite_kept.end(), row.rewrite_kept.begin(), row.rewrite_kept.end());
      review_p.insert(review_p.end(), row.review_p.begin(), row.review_p.end());
      review_p1.insert(review_p1.end(), row.review_p_order1.begin(), row.review_p_order1.end());
      review_p2.insert(review_p2.end(), row.review_p_order2.begin(), row.review_p_order2.end());
      rewritten_offsets[i] = rewritten_end + questions.size();  // every per-turn column alike, checked in check_rows
    }
    append_column(path, columns[kRewrittenQuestions], questions.data(), questions.size());
    append_column(path, columns[kRewrittenAnswers], answers.data(), answers.size());
    append_column(path, columns[kRewrittenOffsets], rewritten_offsets.data(), k);
    append_column(path, columns[kRewriteReplies], replies.data(), replies.size());
    append_column(path, columns[kRewriteReasons], reasons.data(), reasons.size());
    append_column(path, columns[kRewriteKept], rewrite_kept.data(), rewrite_kept.size());
    append_column(path, columns[kReviewP], review_p.data(), review_p.size());
    append_column(path, columns[kReviewPOrder1], review_p1.data(), review_p1.size());
    append_column(path, columns[kReviewPOrder2], review_p2.data(), review_p2.size());
    rows += k;
  }

  void write_attributes(const ShardMeta& meta) {
    const hid_t f = file.get();
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
  }
};

ShardWriter::ShardWriter(const std::string& path, std::uint64_t expected_rows) : impl_(std::make_unique<Impl>()) {
  ErrorPrintingOff quiet;
  Impl& w = *impl_;
  w.path = path;
  const fs::path parent = fs::path(path).parent_path();
  w.parent = parent.empty() ? std::string(".") : parent.string();
  if (!parent.empty()) {
    std::error_code ec;
    fs::create_directories(parent, ec);
    if (ec) fail(path, "creating parent folder " + parent.string() + " failed: " + ec.message());
  }

  Hid fcpl(H5Pcreate(H5P_FILE_CREATE), H5Pclose);
  // No timestamps on the root group either. (With 1.10.8 and the default file format
  // the root group gets none anyway; the datasets' dcpl setting is the one that matters.)
  if (!fcpl.valid() || H5Pset_obj_track_times(fcpl.get(), false) < 0) {
    fail_hdf5(path, "setting file creation properties failed");
  }
  Hid fapl = make_file_access_properties(path);
  const std::string tmp_path = path + ".tmp-" + std::to_string(::getpid());
  w.tmp_path = tmp_path;  // from here on ~Impl removes it unless committed (H5Fcreate may fail half-way: disk full)
  w.file = Hid(H5Fcreate(tmp_path.c_str(), H5F_ACC_TRUNC, fcpl.get(), fapl.get()), H5Fclose);
  if (!w.file.valid()) fail_hdf5(path, "creating temporary file " + tmp_path + " failed");

  w.string_type = make_vlen_string_type(path);
  const hsize_t chunk = hsize_t(std::max<std::uint64_t>(1, std::min<std::uint64_t>(expected_rows, kChunkRows)));
  w.columns.resize(kColumnCount);
  for (int id = 0; id < kColumnCount; ++id) {
    const ColumnSpec spec = column_spec(id);
    const bool text = spec.type_class == H5T_STRING;
    OutColumn& column = w.columns[std::size_t(id)];
    column.name = spec.name;
    column.mem_type = text ? w.string_type.get() : spec.mem_type;
    column.dset = create_column(path, w.file.get(), spec.name, text ? w.string_type.get() : spec.file_type, chunk,
                                spec.shuffle);
  }
  // Offsets columns hold N + 1 entries: the leading 0 is there from the start.
  const std::uint64_t zero = 0;
  append_column(path, w.columns[kAnswerScoresOffsets], &zero, 1);
  append_column(path, w.columns[kRewrittenOffsets], &zero, 1);
}

ShardWriter::ShardWriter(ShardWriter&&) noexcept = default;
ShardWriter& ShardWriter::operator=(ShardWriter&&) noexcept = default;

ShardWriter::~ShardWriter() {
  if (impl_) {
    ErrorPrintingOff quiet;
    impl_.reset();
  }
}

std::uint64_t ShardWriter::rows_written() const { return impl_->rows; }

const std::string& ShardWriter::path() const { return impl_->path; }

void ShardWriter::append(const std::vector<ShardRow>& rows) {
  Impl& w = *impl_;
  w.require_open("append");
  check_rows(w.path, rows, w.rows);  // std::invalid_argument before anything of the block is written
  ErrorPrintingOff quiet;
  try {
    w.append(rows);
  } catch (...) {
    w.state = Impl::State::failed;
    throw;
  }
}

void ShardWriter::commit(const ShardMeta& meta) {
  Impl& w = *impl_;
  w.require_open("commit");
  check_meta(w.path, meta);  // std::invalid_argument; the writer stays open
  ErrorPrintingOff quiet;
  try {
    w.write_attributes(meta);
    for (OutColumn& column : w.columns) {
      if (column.dset.close() < 0) fail_hdf5(w.path, std::string("writing dataset '") + column.name + "' failed");
    }
    w.string_type.close();
    if (w.file.close() < 0) fail_hdf5(w.path, "closing temporary file " + w.tmp_path + " failed");
    fsync_path(w.path, w.tmp_path, false);
    if (std::rename(w.tmp_path.c_str(), w.path.c_str()) != 0) {
      fail(w.path, "renaming " + w.tmp_path + " over it failed: " + std::strerror(errno));
    }
  } catch (...) {
    w.state = Impl::State::failed;  // ~Impl removes the temporary
    throw;
  }
  w.state = Impl::State::committed;
  // The rename is done; making it durable is best effort (the file is in place either way).
  try {
    fsync_path(w.path, w.parent, true);
  } catch (const std::runtime_error&) {
  }
}

void write_shard(const std::string& path, const ShardMeta& meta, const std::vector<ShardRow>& rows) {
  // std::invalid_argument before anything touches the disk
  check_meta(path, meta);
  check_rows(path, rows, 0);
  ShardWriter writer(path, rows.size());
  writer.append(rows);
  writer.commit(meta);
}

// ---------------------------------------------------------------------------
// ShardReader

struct ShardReader::Impl {
  ShardFile shard;
  ShardMeta meta;
  std::vector<Column> columns;  // [kColumnCount], by ColumnId
  hsize_t n = 0;                // rows
};

ShardReader::ShardReader(const std::string& path) : impl_(std::make_unique<Impl>()) {
  ErrorPrintingOff quiet;
  Impl& r = *impl_;
  r.shard = open_shard_file(path);
  r.meta = read_meta(r.shard);
  r.columns.resize(kColumnCount);
  // Opened in file order; `index` fixes the row count n, which the others must match.
  for (int id = 0; id < kColumnCount; ++id) {
    const ColumnSpec spec = column_spec(id);
    Column& column = r.columns[std::size_t(id)];
    column = open_column(r.shard, spec.name, spec.type_class);
    if (id == kIndex) r.n = column.length;
    if (id == kAnswerScoresOffsets || id == kRewrittenOffsets) {
      expect_length(r.shard, column, r.n + 1, "one more than the rows");
    } else if (id == kRewrittenAnswers || id >= kRewriteReplies) {
      expect_length(r.shard, column, r.columns[kRewrittenQuestions].length, "as many as rewritten_questions");
    } else if (id != kAnswerScores && id != kRewrittenQuestions) {
      expect_length(r.shard, column, r.n, "one per row");
    }
  }
}

ShardReader::ShardReader(ShardReader&&) noexcept = default;
ShardReader& ShardReader::operator=(ShardReader&&) noexcept = default;
ShardReader::~ShardReader() = default;

const ShardMeta& ShardReader::meta() const { return impl_->meta; }
std::uint64_t ShardReader::rows() const { return impl_->n; }
const std::string& ShardReader::path() const { return impl_->shard.path; }

std::vector<ShardRow> ShardReader::read_rows(std::uint64_t begin, std::uint64_t end,
                                             const ShardReadOptions& options) const {
  ErrorPrintingOff quiet;
  const Impl& r = *impl_;
  const ShardFile& shard = r.shard;
  if (begin > end || end > r.n) {
    fail(shard.path, "read_rows: rows [" + std::to_string(begin) + ", " + std::to_string(end) +
                         ") are out of range (the shard has " + std::to_string(r.n) + " rows)");
  }
  const hsize_t k = end - begin;
  std::vector<ShardRow> rows(k);
  auto column = [&](int id) -> const Column& { return r.columns[std::size_t(id)]; };

  {
    std::vector<std::uint64_t> values(k);  // [k]
    read_fixed(shard, column(kIndex), H5T_NATIVE_UINT64, begin, k, values.data());
    for (hsize_t i = 0; i < k; ++i) rows[i].index = values[i];
  }
  auto read_text = [&](int id, std::string ShardRow::*field) {
    std::vector<std::string> values;  // [k]
    read_strings(shard, column(id), nullptr, begin, k, values);
    for (hsize_t i = 0; i < k; ++i) rows[i].*field = std::move(values[i]);
  };
  read_text(kKey, &ShardRow::key);
  read_text(kId, &ShardRow::id);
  read_text(kSubset, &ShardRow::subset);
  {  // status and reason are stored by name
    std::vector<std::string> status, reason;  // [k]
    read_strings(shard, column(kStatus), nullptr, begin, k, status);
    read_strings(shard, column(kReason), nullptr, begin, k, reason);
    for (hsize_t i = 0; i < k; ++i) {
      try {
        rows[i].status = status_from_name(status[i]);
        rows[i].reason = reason_from_name(reason[i]);
      } catch (const std::invalid_argument& e) {
        fail(shard.path, "row " + std::to_string(begin + i) + ": " + e.what());
      }
    }
  }
  read_text(kMessage, &ShardRow::message);
  read_text(kImage, &ShardRow::image);
  if (options.records) read_text(kRecord, &ShardRow::record);

  auto read_number = [&](int id, hid_t mem_type, auto field) {
    using T = std::remove_reference_t<decltype(rows[0].*field)>;
    std::vector<T> values(k);  // [k]
    read_fixed(shard, column(id), mem_type, begin, k, values.data());
    for (hsize_t i = 0; i < k; ++i) rows[i].*field = values[i];
  };
  read_number(kQuestionScore, H5T_NATIVE_DOUBLE, &ShardRow::question_score);
  read_number(kAnswerScore, H5T_NATIVE_DOUBLE, &ShardRow::answer_score);
  read_number(kSelectedQuestions, H5T_NATIVE_INT8, &ShardRow::selected_questions);
  read_number(kSelectedAnswers, H5T_NATIVE_INT8, &ShardRow::selected_answers);
  read_number(kKept, H5T_NATIVE_INT8, &ShardRow::kept);
  read_number(kTruncated, H5T_NATIVE_INT8, &ShardRow::truncated);
  read_number(kGlobalRank, H5T_NATIVE_INT64, &ShardRow::global_rank);

  {
    const Column& scores = column(kAnswerScores);
    std::vector<std::uint64_t> offsets =  // [k + 1] file offsets of rows begin..end
        read_offsets(shard, column(kAnswerScoresOffsets), r.n, begin, end, scores.length, "answer_scores");
    std::vector<float> values(offsets[k] - offsets[0]);  // this range's values
    read_fixed(shard, scores, H5T_NATIVE_FLOAT, offsets[0], values.size(), values.data());
    for (hsize_t i = 0; i < k; ++i) {
      rows[i].answer_scores.assign(values.begin() + std::ptrdiff_t(offsets[i] - offsets[0]),
                                   values.begin() + std::ptrdiff_t(offsets[i + 1] - offsets[0]));
    }
  }

  {
    const Column& questions = column(kRewrittenQuestions);
    std::vector<std::uint64_t> offsets = read_offsets(shard, column(kRewrittenOffsets), r.n, begin, end,
                                                      questions.length, "rewritten_questions");
    const hsize_t turns = offsets[k] - offsets[0];
    std::vector<std::string> q, a, replies, reasons;  // [turns] each
    read_strings(shard, questions, nullptr, offsets[0], turns, q);
    read_strings(shard, column(kRewrittenAnswers), nullptr, offsets[0], turns, a);
    read_strings(shard, column(kRewriteReplies), nullptr, offsets[0], turns, replies);
    read_strings(shard, column(kRewriteReasons), nullptr, offsets[0], turns, reasons);
    std::vector<std::int8_t> kept(turns);            // [turns]
    std::vector<float> p(turns), p1(turns), p2(turns);  // [turns]
    read_fixed(shard, column(kRewriteKept), H5T_NATIVE_INT8, offsets[0], turns, kept.data());
    read_fixed(shard, column(kReviewP), H5T_NATIVE_FLOAT, offsets[0], turns, p.data());
    read_fixed(shard, column(kReviewPOrder1), H5T_NATIVE_FLOAT, offsets[0], turns, p1.data());
    read_fixed(shard, column(kReviewPOrder2), H5T_NATIVE_FLOAT, offsets[0], turns, p2.data());
    for (hsize_t i = 0; i < k; ++i) {
      const std::ptrdiff_t from = std::ptrdiff_t(offsets[i] - offsets[0]);
      const std::ptrdiff_t to = std::ptrdiff_t(offsets[i + 1] - offsets[0]);
      ShardRow& row = rows[i];
      row.rewritten_questions.assign(std::make_move_iterator(q.begin() + from),
                                     std::make_move_iterator(q.begin() + to));
      row.rewritten_answers.assign(std::make_move_iterator(a.begin() + from),
                                   std::make_move_iterator(a.begin() + to));
      row.rewrite_replies.assign(std::make_move_iterator(replies.begin() + from),
                                 std::make_move_iterator(replies.begin() + to));
      row.rewrite_reasons.assign(std::make_move_iterator(reasons.begin() + from),
                                 std::make_move_iterator(reasons.begin() + to));
      row.rewrite_kept.assign(kept.begin() + from, kept.begin() + to);
      row.review_p.assign(p.begin() + from, p.begin() + to);
      row.review_p_order1.assign(p1.begin() + from, p1.begin() + to);
      row.review_p_order2.assign(p2.begin() + from, p2.begin() + to);
    }
  }
  return rows;
}

// ---------------------------------------------------------------------------
// Public functions

ShardMeta read_shard_meta(const std::string& path) {
  ErrorPrintingOff quiet;
  ShardFile shard = open_shard_file(path);
  return read_meta(shard);
}

ShardData read_shard(const std::string& path, const ShardReadOptions& options) {
  ShardReader reader(path);
  ShardData data;
  data.meta = reader.meta();
  data.rows = reader.read_rows(0, reader.rows(), options);
  return data;
}

std::uint64_t shard_row_count(const std::string& path) { return ShardReader(path).rows(); }

std::vector<ShardRow> read_shard_rows(const std::string& path, std::uint64_t begin, std::uint64_t end,
                                      const ShardReadOptions& options) {
  return ShardReader(path).read_rows(begin, end, options);
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
  read_strings(shard, record, positions.data(), 0, positions.size(), sorted);
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
  row.status = s.status;
  row.reason = s.reason;
  row.message = printable_text(s.message);
  row.image = printable_text(s.image);
  row.record = printable_text(s.raw);  // valid records are UTF-8 without NUL: verbatim
  return row;
}

}  // namespace align2
