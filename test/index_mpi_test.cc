// The parallel index over MPI ranks: every rank indexes its part, rank 0 merges, and the index
// is build_index's byte for byte (run with 2 and 3 ranks).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/data/corpus_index.h"
#include "distributed/mpi_comm.h"
#include "test/pool_fixture.h"
#include "test/test_support.h"

namespace align2 {
namespace {

TEST(IndexMpi, RanksBuildTheOnePassIndexByteForByte) {
  MpiComm comm;
  std::vector<std::uint8_t> dir_bytes;
  if (comm.rank() == 0) {
    const std::string dir = test::scratch_dir("index-mpi");
    test::write_mixed_pool(dir);
    dir_bytes.assign(dir.begin(), dir.end());
  }
  comm.broadcast(dir_bytes, 0);
  const std::vector<PoolFile> files = test::mixed_pool_files(std::string(dir_bytes.begin(), dir_bytes.end()));
  const IndexOptions options = test::mixed_pool_options();
  std::vector<std::vector<std::uint8_t>> parts =
      comm.gatherv(index_pool_part(files, options, comm.rank(), comm.size()), 0);
  if (comm.rank() == 0) {
    ASSERT_EQ(parts.size(), std::size_t(comm.size()));
    EXPECT_EQ(serialize_index(merge_pool_parts(files, options, parts)), serialize_index(build_index(files, options)));
  }
  comm.barrier();
}

}  // namespace
}  // namespace align2
