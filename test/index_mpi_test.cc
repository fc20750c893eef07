// The parallel index over MPI ranks: every rank indexes its part, the parts merged give
// build_index's index byte for byte, and share_index gives it to every rank (run with 2 and 3
// ranks).
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "core/data/corpus_index.h"
#include "core/pipeline/curation.h"
#include "distributed/mpi_comm.h"
#include "test/pool_fixture.h"
#include "test/test_support.h"

namespace align2 {
namespace {

// A scratch folder rank 0 makes and fills (`fill`, on rank 0 only); its path on every rank.
std::string shared_scratch_dir(Comm& comm, const std::string& name, const std::function<void(const std::string&)>& fill) {
  std::vector<std::uint8_t> bytes;
  if (comm.rank() == 0) {
    const std::string dir = test::scratch_dir(name);
    fill(dir);
    bytes.assign(dir.begin(), dir.end());
  }
  comm.broadcast(bytes, 0);
  return std::string(bytes.begin(), bytes.end());
}

std::string mixed_pool_dir(Comm& comm, const std::string& name) {
  return shared_scratch_dir(comm, name, [](const std::string& dir) { test::write_mixed_pool(dir); });
}

// The mixed pool as a job's pool section (the options of test::mixed_pool_options()).
PoolConfig mixed_pool_config(Comm& comm, const std::string& name) {
  PoolConfig pool;
  pool.files = test::mixed_pool_files(mixed_pool_dir(comm, name));
  pool.subset_field = test::mixed_pool_options().validation.subset_field;
  pool.max_record_bytes = test::mixed_pool_options().validation.max_record_bytes;
  return pool;
}

// share_index fails on every rank with a message that holds `needle`.
void expect_share_index_error(Comm& comm, const PoolConfig& pool, const std::string& needle) {
  try {
    share_index(comm, pool);
    ADD_FAILURE() << "rank " << comm.rank() << ": no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(IndexMpi, RanksBuildTheOnePassIndexByteForByte) {
  MpiComm comm;
  const std::vector<PoolFile> files = test::mixed_pool_files(mixed_pool_dir(comm, "index-mpi"));
  const IndexOptions options = test::mixed_pool_options();
  std::vector<std::vector<std::uint8_t>> parts =
      comm.gatherv(index_pool_part(files, options, comm.rank(), comm.size()), 0);
  if (comm.rank() == 0) {
    ASSERT_EQ(parts.size(), std::size_t(comm.size()));
    EXPECT_EQ(serialize_index(merge_pool_parts(files, options, parts)), serialize_index(build_index(files, options)));
  }
  comm.barrier();
}

// What `align2 curate` builds on every rank: the parts gathered by all, merged by each, the
// repeats' keys read again by their rank and shared. Every rank's index is the one-pass index.
TEST(IndexMpi, ShareIndexGivesEveryRankTheOnePassIndex) {
  MpiComm comm;
  const PoolConfig pool = mixed_pool_config(comm, "share-index-mpi");
  const IndexOptions options = test::mixed_pool_options();
  ASSERT_EQ(index_options(pool).validation.max_record_bytes, options.validation.max_record_bytes);
  const PoolIndex shared = share_index(comm, pool);
  const PoolIndex one_pass = build_index(pool.files, options);
  std::uint64_t repeats = 0;
  for (const IndexEntry& e : one_pass.entries) repeats += e.repeat > 0;
  EXPECT_GT(repeats, std::uint64_t(comm.size())) << "the pool should hold repeats for every rank to key";
  EXPECT_EQ(serialize_index(shared), serialize_index(one_pass)) << "rank " << comm.rank();
  comm.barrier();
}

// A pool error reaches every rank as the same exception.
TEST(IndexMpi, ShareIndexThrowsAPoolErrorOnEveryRank) {
  MpiComm comm;
  const std::string dir = shared_scratch_dir(comm, "share-index-mpi-error", [](const std::string& d) {
    std::ofstream(d + "/broken.json") << "[{\"id\": 1, \"conversations\": []},\n {\"id\": 2,,}]\n";
  });
  PoolConfig pool;
  pool.files = {{dir + "/broken.json", ""}};
  expect_share_index_error(comm, pool, "broken.json");
  comm.barrier();
}

// Ranks that do not see the same pool (here: an image root on all but rank 0, as a job whose
// nodes mount different folders would) refuse together instead of curating different indexes.
TEST(IndexMpi, RanksThatSeeDifferentPoolsRefuseTogether) {
  MpiComm comm;
  PoolConfig pool = mixed_pool_config(comm, "share-index-mpi-differ");
  if (comm.rank() > 0) pool.image_root = test::source_path("examples/demo/images");
  expect_share_index_error(comm, pool, "differs from rank");
  comm.barrier();
}

}  // namespace
}  // namespace align2
