// main() for tests run under mpirun: MPI around GoogleTest. Written by the comm work.
//
// Every rank runs every test. Rank 0 keeps gtest's normal printer; the other ranks
// print only failed assertions, every line prefixed "[rank r]" (so a failure
// seen by rank 2 alone is not lost). The exit code is the maximum over ranks of
// RUN_ALL_TESTS(), so every rank - and mpirun - reports failure if any rank failed.
//
// Tests should keep collectives unconditional: an ASSERT_* that returns early on
// one rank before a collective leaves the other ranks waiting in it.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>
#include <string>

namespace {

class FailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit FailurePrinter(int rank) : rank_(rank) {}
  // The test's name is kept here: UnitTest::current_test_info() must not be called
  // from OnTestPartResult (gtest holds its own mutex there; it would deadlock).
  void OnTestStart(const ::testing::TestInfo& test) override {
    test_ = std::string(test.test_suite_name()) + "." + test.name();
  }
  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (!result.failed()) return;
    // Every line of the (often multi-line) message carries the rank prefix.
    const std::string prefix = "[rank " + std::to_string(rank_) + "] ";
    std::string text = prefix + test_ + " " + (result.file_name() ? result.file_name() : "?") +
                       ":" + std::to_string(result.line_number()) + ": ";
    for (const char* c = result.message(); *c != '\0'; ++c) {
      text += *c;
      if (*c == '\n' && c[1] != '\0') text += prefix + "  ";
    }
    if (text.back() != '\n') text += '\n';
    std::fputs(text.c_str(), stderr);  // one call, so ranks' lines interleave less
    std::fflush(stderr);
  }

 private:
  int rank_;
  std::string test_ = "(no test)";
};

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  if (MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
    std::fprintf(stderr, "MPI_Init_thread failed\n");
    return 1;
  }
  ::testing::InitGoogleTest(&argc, argv);

  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank != 0) {
    ::testing::TestEventListeners& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new FailurePrinter(rank));  // gtest owns it
  }

  const int local = RUN_ALL_TESTS();
  int global = local;
  MPI_Allreduce(&local, &global, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return global;
}
