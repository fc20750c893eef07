// align2 slurm-script: the sbatch script's lines and quoting, the template's shared body, and the
// script's USR1 -> forward -> requeue logic run against stand-in srun and scontrol commands
// (no Slurm needed; test/slurm_test.cc runs the script on a real loopback Slurm).
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "core/pipeline/slurm_script.h"
#include "test/test_support.h"

namespace align2 {
namespace {

namespace fs = std::filesystem;

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

SlurmScriptOptions base_options() {
  SlurmScriptOptions o;
  o.bin = "/opt/align2/bin/align2";
  o.config = "/data/jobs/job.json";
  return o;
}

TEST(ShellQuote, PlainWordsStayAndEverythingElseIsSingleQuoted) {
  EXPECT_EQ(shell_quote("abc/def-1.2:x=y@%+,_"), "abc/def-1.2:x=y@%+,_");
  EXPECT_EQ(shell_quote(""), "''");
  EXPECT_EQ(shell_quote("a b"), "'a b'");
  EXPECT_EQ(shell_quote("it's"), "'it'\\''s'");
  EXPECT_EQ(shell_quote("$HOME"), "'$HOME'");
}

TEST(ShellQuote, BashReadsBackEveryValue) {
  const std::vector<std::string> values = {"plain", "", "two words", "it's", "\"double\"", "$HOME `id` $(id)",
                                           "a\\b", "*?[x]", "tab\there", "~user", "!event", "semi;colon&"};
  std::string root = test::scratch_dir("quote");
  for (const std::string& v : values) {
    test::write_file(root + "/q.sh", "printf %s " + shell_quote(v) + "\n");
    auto r = test::run_command("cd " + root + " && bash q.sh");
    EXPECT_EQ(r.exit_code, 0) << v;
    EXPECT_EQ(r.out, v);
  }
}

TEST(SlurmScript, GpuRanksOnePerGpu) {
  SlurmScriptOptions o = base_options();
  o.nodes = 2;
  o.gpus_per_node = 4;
  o.partition = "gpu";
  o.account = "proj-42";
  o.time = "12:00:00";
  o.chdir = "/data/runs";
  o.sets = {"output_dir=runs/n8", "dtype=bf16"};
  o.sbatch = {"--mem=0", "--constraint=a100"};
  std::string s = slurm_script(o);
  EXPECT_EQ(s.rfind("#!/bin/bash\n", 0), 0u);
  for (const char* line : {"#SBATCH --job-name=align2-curate\n", "#SBATCH --nodes=2\n", "#SBATCH --ntasks-per-node=4\n",
                           "#SBATCH --gpus-per-node=4\n", "#SBATCH --partition=gpu\n", "#SBATCH --account=proj-42\n",
                           "#SBATCH --time=12:00:00\n", "#SBATCH --chdir=/data/runs\n", "#SBATCH --output=%x-%j.out\n",
                           "#SBATCH --open-mode=append\n", "#SBATCH --requeue\n", "#SBATCH --signal=B:USR1@300\n",
                           "#SBATCH --mem=0\n", "#SBATCH --constraint=a100\n", "# export NCCL_SOCKET_IFNAME=",
                           "ALIGN2_BIN=/opt/align2/bin/align2\n", "ALIGN2_CONFIG=/data/jobs/job.json\n",
                           "ALIGN2_ARGS=(--set output_dir=runs/n8 --set dtype=bf16)\n",
                           "srun --mpi=pmix --kill-on-bad-exit=1 \"$ALIGN2_BIN\" curate --config \"$ALIGN2_CONFIG\" "
                           "\"${ALIGN2_ARGS[@]}\" &\n",
                           "if scontrol requeue \"$SLURM_JOB_ID\"; then exit 0; fi\n"})
    EXPECT_TRUE(has(s, line)) << line << "\n" << s;
  EXPECT_FALSE(has(s, "--cpus-per-task"));
  // Every #SBATCH line comes before the first command: sbatch stops reading at it.
  std::size_t last_sbatch = s.rfind("#SBATCH");
  std::size_t first_command = s.find("\nALIGN2_BIN=");
  EXPECT_LT(last_sbatch, first_command);
}

TEST(SlurmScript, CpuRanksAndDefaults) {
  SlurmScriptOptions o = base_options();
  o.ntasks_per_node = 2;
  o.cpus_per_task = 1;
  o.signal_seconds = 0;
  std::string s = slurm_script(o);
  EXPECT_TRUE(has(s, "#SBATCH --nodes=1\n#SBATCH --ntasks-per-node=2\n"));
  EXPECT_TRUE(has(s, "#SBATCH --cpus-per-task=1\n"));
  EXPECT_FALSE(has(s, "--gpus-per-node"));
  EXPECT_FALSE(has(s, "--partition"));
  EXPECT_FALSE(has(s, "--account"));
  EXPECT_FALSE(has(s, "--time"));
  EXPECT_FALSE(has(s, "#SBATCH --signal"));
  EXPECT_FALSE(has(s, "NCCL_"));  // no GPUs, no NCCL hints
  EXPECT_TRUE(has(s, "ALIGN2_ARGS=()\n"));
}

TEST(SlurmScript, QuotesPathsForSbatchAndTheShell) {
  SlurmScriptOptions o = base_options();
  o.bin = "/opt/my tools/align2";
  o.config = "/data/it's/job.json";
  o.output = "/logs/with space/%x-%j.out";
  o.chdir = "/work dir";
  o.sets = {"output_dir=/runs/a b", "alpha=0.3"};
  std::string s = slurm_script(o);
  EXPECT_TRUE(has(s, "#SBATCH --output=\"/logs/with space/%x-%j.out\"\n"));
  EXPECT_TRUE(has(s, "#SBATCH --chdir=\"/work dir\"\n"));
  EXPECT_TRUE(has(s, "ALIGN2_BIN='/opt/my tools/align2'\n"));
  EXPECT_TRUE(has(s, "ALIGN2_CONFIG='/data/it'\\''s/job.json'\n"));
  EXPECT_TRUE(has(s, "ALIGN2_ARGS=(--set 'output_dir=/runs/a b' --set alpha=0.3)\n"));
  std::string root = test::scratch_dir("slurm-syntax");
  test::write_file(root + "/job.sbatch", s);
  auto r = test::run_command("bash -n " + root + "/job.sbatch");
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST(SlurmScript, RefusesWhatCannotBeWritten) {
  auto refused = [](SlurmScriptOptions o, const std::string& option) {
    try {
      slurm_script(o);
    } catch (const std::invalid_argument& e) {
      EXPECT_TRUE(has(e.what(), "--" + option)) << e.what();
      return;
    }
    ADD_FAILURE() << "not refused: --" << option;
  };
  SlurmScriptOptions o = base_options();
  o.nodes = 0;
  refused(o, "nodes");
  o = base_options();
  o.ntasks_per_node = 0;
  refused(o, "ntasks-per-node");
  o = base_options();
  o.output = "/logs/\"x\".out";
  refused(o, "output");
  o = base_options();
  o.partition = "a\nb";
  refused(o, "partition");
  o = base_options();
  o.sets = {"no-equals"};
  refused(o, "set");
  o = base_options();
  o.sets = {"a=line\nbreak"};
  refused(o, "set");
  o = base_options();
  o.sbatch = {"mem=0"};
  refused(o, "sbatch");
  o = base_options();
  o.signal_seconds = -1;
  refused(o, "signal-seconds");
}

TEST(SlurmScript, TemplateSharesTheBody) {
  std::string tmpl = test::read_file(test::source_path("slurm/curate.sbatch"));
  EXPECT_TRUE(has(tmpl, kSlurmCurateBody)) << "slurm/curate.sbatch must end with kSlurmCurateBody verbatim";
  EXPECT_EQ(tmpl.size() - tmpl.rfind(kSlurmCurateBody), std::string(kSlurmCurateBody).size());
  for (const char* line : {"#SBATCH --requeue\n", "#SBATCH --signal=B:USR1@300\n", "#SBATCH --open-mode=append\n"})
    EXPECT_TRUE(has(tmpl, line)) << line;
}

// The generated script with stand-ins for srun and scontrol on PATH: they log their arguments;
// the fake srun runs until it gets USR1 (then exits 3) or until it is told to stop.
struct FakeSlurm {
  std::string root = test::scratch_dir("fake-slurm");
  FakeSlurm() {
    test::write_file(root + "/bin/srun",
                     "#!/bin/bash\n"
                     "printf '%s\\n' \"$@\" > \"$FAKE/srun.args\"\n"
                     "trap 'echo usr1 >> \"$FAKE/srun.signals\"; exit ${FAKE_USR1_EXIT:-3}' USR1\n"
                     "touch \"$FAKE/srun.started\"\n"
                     "if [ -n \"${FAKE_EXIT:-}\" ]; then exit \"$FAKE_EXIT\"; fi\n"
                     "for i in $(seq 3000); do sleep 0.01; done\n"
                     "exit 9\n");
    test::write_file(root + "/bin/scontrol",
                     "#!/bin/bash\necho \"$*\" >> \"$FAKE/scontrol.calls\"\nexit ${FAKE_SCONTROL_EXIT:-0}\n");
    fs::permissions(root + "/bin/srun", fs::perms::owner_all);
    fs::permissions(root + "/bin/scontrol", fs::perms::owner_all);
    SlurmScriptOptions o = base_options();
    o.sets = {"output_dir=/runs/a b", "note=it's \"x\""};
    test::write_file(root + "/job.sbatch", slurm_script(o));
  }
  std::string env(const std::string& extra = "") const {
    return "FAKE=" + root + " PATH=" + root + "/bin:$PATH SLURM_JOB_ID=42 " + extra + " bash " + root + "/job.sbatch";
  }
  std::string file(const std::string& name) const {
    return fs::exists(root + "/" + name) ? test::read_file(root + "/" + name) : std::string();
  }
};

TEST(SlurmScriptRun, PassesTheArgumentsAndTheExitStatus) {
  FakeSlurm fake;
  auto ok = test::run_command(fake.env("FAKE_EXIT=0"));
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(fake.file("srun.args"),
            "--mpi=pmix\n--kill-on-bad-exit=1\n/opt/align2/bin/align2\ncurate\n--config\n/data/jobs/job.json\n"
            "--set\noutput_dir=/runs/a b\n--set\nnote=it's \"x\"\n");
  auto failed = test::run_command(fake.env("FAKE_EXIT=5"));
  EXPECT_EQ(failed.exit_code, 5);  // a failure without USR1 is not requeued
  EXPECT_EQ(fake.file("scontrol.calls"), "");
}

// USR1 to the batch shell, as sbatch --signal=B:USR1@S sends it; returns the shell's exit status.
int signal_the_script(const FakeSlurm& fake, const std::string& env) {
  auto started = test::run_command("(" + fake.env(env) + " > " + fake.root + "/job.log 2>&1; echo $? > " + fake.root +
                                   "/job.status) > /dev/null 2>&1 & echo $!");
  EXPECT_EQ(started.exit_code, 0);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!fs::exists(fake.root + "/srun.started") && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_TRUE(fs::exists(fake.root + "/srun.started"));
  // The batch shell: the one bash running job.sbatch (the subshell's child).
  auto shell = test::run_command("pgrep -f -n '^bash " + fake.root + "/job.sbatch'");
  EXPECT_EQ(shell.exit_code, 0) << "no batch shell";
  if (shell.exit_code != 0) return -1;
  EXPECT_EQ(kill(pid_t(std::stol(shell.out)), SIGUSR1), 0);
  while (!fs::exists(fake.root + "/job.status") && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::string status = fake.file("job.status");
  for (const char* name : {"srun.started", "job.status"}) fs::remove(fake.root + "/" + name);
  return status.empty() ? -1 : std::stoi(status);
}

TEST(SlurmScriptRun, Usr1StopsTheStepAndRequeues) {
  // The ranks stop with a failure (USR1's default action kills them) or exit 0 (stopped
  // cleanly, or finished just in time): either way the job requeues and the rerun resumes.
  for (const char* usr1_exit : {"3", "0"}) {
    FakeSlurm fake;
    EXPECT_EQ(signal_the_script(fake, std::string("FAKE_USR1_EXIT=") + usr1_exit), 0) << usr1_exit;
    std::string log = fake.file("job.log");
    EXPECT_EQ(fake.file("srun.signals"), "usr1\n") << log;
    EXPECT_EQ(fake.file("scontrol.calls"), "requeue 42\n") << log;
    EXPECT_TRUE(has(log, std::string("stopped (exit ") + usr1_exit + "); requeueing job 42")) << log;
  }
  FakeSlurm fake;  // a refused requeue fails the job, saying how to resume
  EXPECT_EQ(signal_the_script(fake, "FAKE_SCONTROL_EXIT=1"), 1);
  EXPECT_TRUE(has(fake.file("job.log"), "submit the same script again")) << fake.file("job.log");
}

TEST(SlurmScriptCli, PrintsAScriptAndDocumentsEveryOption) {
  std::string root = test::scratch_dir("slurm-cli");
  test::write_file(root + "/job.json",
                   R"({"pools": ["pool.json"], "question_model": "qrm", "answer_model": "arm"})");
  std::string bin = test::align2_bin();
  auto r = test::run_command("cd " + root + " && " + bin +
                             " slurm-script --config job.json --nodes 1 --gpus-per-node 0 --ntasks-per-node 2"
                             " --set output_dir=out --time 5 --partition debug");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(has(r.out, "ALIGN2_CONFIG=" + shell_quote(fs::canonical(root).string() + "/job.json") + "\n")) << r.out;
  EXPECT_TRUE(has(r.out, "ALIGN2_BIN=" + shell_quote(fs::canonical(bin).string()) + "\n")) << r.out;
  EXPECT_TRUE(has(r.out, "#SBATCH --chdir=" + fs::canonical(root).string() + "\n")) << r.out;
  EXPECT_TRUE(has(r.out, "#SBATCH --ntasks-per-node=2\n"));
  EXPECT_TRUE(has(r.out, "ALIGN2_ARGS=(--set output_dir=out)\n"));

  auto help = test::run_command(bin + " slurm-script --help");
  ASSERT_EQ(help.exit_code, 0);
  for (const char* option : {"--config", "--nodes", "--gpus-per-node", "--ntasks-per-node", "--cpus-per-task",
                             "--partition", "--account", "--time", "--job-name", "--output", "--chdir",
                             "--signal-seconds", "--set", "--sbatch", "--bin"})
    EXPECT_TRUE(has(help.out, std::string("  ") + option + " ")) << option << "\n" << help.out;

  // Wrong usage exits 2; a config that does not load exits 1 with its reason.
  EXPECT_EQ(test::run_command(bin + " slurm-script --nodes 1 --gpus-per-node 0").exit_code, 2);
  EXPECT_EQ(test::run_command(bin + " slurm-script --config " + root + "/job.json --gpus-per-node 0").exit_code, 2);
  EXPECT_EQ(test::run_command(bin + " slurm-script --config " + root + "/job.json --nodes 0 --gpus-per-node 0").exit_code, 2);
  EXPECT_EQ(test::run_command(bin + " slurm-script --config " + root +
                              "/job.json --nodes 1 --gpus-per-node 4 --ntasks-per-node 2").exit_code, 2);
  auto bad = test::run_command(bin + " slurm-script --config " + root + "/job.json --nodes 1 --gpus-per-node 0 --set nope=1");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_TRUE(has(bad.err, "nope")) << bad.err;
  auto missing = test::run_command(bin + " slurm-script --config " + root + "/none.json --nodes 1 --gpus-per-node 0");
  EXPECT_EQ(missing.exit_code, 1);
}

}  // namespace
}  // namespace align2
