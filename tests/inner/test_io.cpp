// inner/io.h and inner/run_dir.h: the verified archive container (every corruption is a
// one-line c10::ValueError naming the file, before or inside LibTorch), IoError for failed
// writes, and the ownership rules of output directories.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "inner/io.h"
#include "inner/run_dir.h"
#include "tests/util/test_util.h"

namespace qsched {
namespace {

namespace fs = std::filesystem;

/// A small archive: a version, a string and a tensor.
void write_small(const std::string& path, const std::string& kind = "checkpoint") {
  torch::serialize::OutputArchive a;
  a.write("version", c10::IValue(int64_t{1}));
  a.write("text", c10::IValue(std::string("hello")));
  a.write("t", torch::arange(64, torch::kFloat), /*is_buffer=*/true);
  write_archive(path, a, kind);
}

/// Opens `path` as a checkpoint and reads every entry.
void read_all(const std::string& path) {
  ArchiveReader r(path, "checkpoint", "checkpoint");
  r.check_version(1);
  EXPECT_EQ(r.read("text").toStringRef(), "hello");
  torch::Tensor t;
  r.archive().read("t", t, true);
  EXPECT_TRUE(torch::equal(t, torch::arange(64, torch::kFloat)));
}

/// The ValueError message of reading `path`, "" when it loads.
std::string load_error(const std::string& path) {
  try {
    read_all(path);
  } catch (const c10::ValueError& e) {
    return e.what_without_backtrace();
  }
  return "";
}

TEST(ArchiveContainer, RoundTrip) {
  test::TempDir d;
  write_small(d.file("a.pt"));
  EXPECT_NO_THROW(read_all(d.file("a.pt")));
  const std::string b = test::read_file(d.file("a.pt"));
  EXPECT_EQ(b.substr(0, 8), "QSCHEDTA");
  EXPECT_EQ(b.substr(kArchiveHeaderBytes, 4), std::string("PK\x03\x04"));
}

TEST(ArchiveContainer, EverySingleByteFlipIsRejectedWithOneLineNamingTheFile) {
  test::TempDir d;
  write_small(d.file("a.pt"));
  const std::string good = test::read_file(d.file("a.pt"));
  ASSERT_GT(good.size(), 1000u);
  for (size_t i = 0; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0x01);
    test::write_file(d.file("bad.pt"), bad);
    const std::string msg = load_error(d.file("bad.pt"));
    ASSERT_NE(msg, "") << "a flip at byte " << i << " of " << good.size() << " loaded";
    ASSERT_NE(msg.find(d.file("bad.pt")), std::string::npos) << msg;
    ASSERT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(ArchiveContainer, TensorByteFlipTruncationGarbageOlderFormatAndOtherKind) {
  test::TempDir d;
  write_small(d.file("a.pt"));
  const std::string good = test::read_file(d.file("a.pt"));
  auto variant = [&](const std::string& bytes) {
    test::write_file(d.file("v.pt"), bytes);
    return load_error(d.file("v.pt"));
  };
  test::write_file(d.file("flip.pt"), good);
  test::flip_tensor_byte(d.file("flip.pt"));
  EXPECT_NE(load_error(d.file("flip.pt")).find("CRC-32 mismatch"), std::string::npos);
  for (size_t n : {size_t{0}, size_t{5}, size_t{20}, size_t{47}, size_t{48}, good.size() / 2,
                   good.size() - 1}) {
    const std::string msg = variant(good.substr(0, n));
    EXPECT_TRUE(msg.find("truncated") != std::string::npos ||
                msg.find("not a qsched archive") != std::string::npos)
        << n << ": " << msg;
  }
  EXPECT_NE(variant(good + "x").find("trailing bytes"), std::string::npos);
  EXPECT_NE(variant("garbage, not an archive").find("not a qsched archive"), std::string::npos);
  EXPECT_NE(variant(good.substr(kArchiveHeaderBytes)).find("older qsched"), std::string::npos);
  write_small(d.file("c.pt"), "controller");
  EXPECT_NE(load_error(d.file("c.pt")).find("holds a qsched controller archive, not a checkpoint"),
            std::string::npos);
  EXPECT_NE(load_error(d.file("missing.pt")).find("does not exist"), std::string::npos);
  EXPECT_NE(load_error(d.path()).find("cannot be read"), std::string::npos);
}

TEST(ArchiveContainer, CorruptPayloadWithAValidCrcNeverEscapesAsAnotherException) {
  // What LibTorch itself throws for a broken zip or pickle (c10::Error, std::out_of_range,
  // TorchScript parse errors) must come out as one ValueError line naming the file.
  test::TempDir d;
  write_small(d.file("a.pt"));
  const std::string good = test::read_file(d.file("a.pt"));
  int rejected = 0;
  for (size_t i = kArchiveHeaderBytes; i < good.size(); i += 3) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0xff);
    const uint32_t crc = crc32_of(bad.data() + 16, bad.size() - 16);
    for (int k = 0; k < 4; ++k) bad[12 + k] = static_cast<char>((crc >> (8 * k)) & 0xff);
    test::write_file(d.file("bad.pt"), bad);
    try {
      ArchiveReader r(d.file("bad.pt"), "checkpoint", "checkpoint");
      r.read("version");
      r.read("text");
    } catch (const c10::ValueError& e) {
      const std::string msg = e.what_without_backtrace();
      ASSERT_NE(msg.find(d.file("bad.pt")), std::string::npos) << msg;
      ASSERT_EQ(msg.find('\n'), std::string::npos) << msg;
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 50);
}

TEST(AtomicWrite, FailuresAreIoErrorsAndLeaveNoTemporaryFile) {
  test::TempDir d;
  test::write_file(d.file("file"), "x");
  // A path whose parent is a regular file fails for root too.
  try {
    atomic_write(d.file("file/out.json"), "{}");
    ADD_FAILURE() << "expected IoError";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find(d.file("file/out.json")),
              std::string::npos);
  }
  // Renaming over a directory fails; the temporary file is removed.
  fs::create_directory(d.file("dir"));
  EXPECT_THROW(atomic_write(d.file("dir"), "{}"), IoError);
  for (const auto& e : fs::directory_iterator(d.path()))
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
  EXPECT_THROW(make_dirs(d.file("file/sub")), IoError);
  EXPECT_VALUE_ERROR(make_dirs(d.file("file")), "a file of that name exists");
}

TEST(RunDir, ClaimsMissingEmptyAndOwnDirectoriesRefusesOthers) {
  test::TempDir d;
  claim_output_dir(d.file("new"), "train", false, false);
  EXPECT_TRUE(is_own_dir(d.file("new"), "train"));
  claim_output_dir(d.file("new"), "train", true, false);  // resume: same kind
  EXPECT_VALUE_ERROR(claim_output_dir(d.file("new"), "apply", false, false),
                     "is a qsched train directory, not an apply one");
  EXPECT_VALUE_ERROR(claim_output_dir(d.file("new"), "apply", true, false),
                     "qsched train --resume");
  fs::create_directory(d.file("empty"));
  claim_output_dir(d.file("empty"), "sweep", false, false);
  EXPECT_TRUE(is_own_dir(d.file("empty"), "sweep"));

  test::write_file(d.file("foreign/notes.txt"), "mine");
  EXPECT_VALUE_ERROR(claim_output_dir(d.file("foreign"), "train", false, false), "--force");
  EXPECT_VALUE_ERROR(claim_output_dir(d.file("foreign"), "train", true, true), "no .qsched-run");
  EXPECT_FALSE(file_exists(d.file("foreign/.qsched-run")));
  claim_output_dir(d.file("foreign"), "train", false, true);
  EXPECT_TRUE(is_own_dir(d.file("foreign"), "train"));
  EXPECT_EQ(test::read_file(d.file("foreign/notes.txt")), "mine");
  EXPECT_VALUE_ERROR(claim_output_dir(d.file("missing"), "train", true, false), "does not exist");
  test::write_file(d.file("afile"), "x");
  EXPECT_VALUE_ERROR(claim_output_dir(d.file("afile"), "train", false, true), "not a directory");
  test::write_file(d.file("broken/.qsched-run"), "{");
  EXPECT_VALUE_ERROR(claim_output_dir(d.file("broken"), "train", false, false), "corrupt");
}

TEST(RunDir, StaleTemporaryFilesOfGoneProcessesAreRemovedOthersKept) {
  test::TempDir d;
  const std::string dir = d.file("run");
  fs::create_directory(dir);
  // Older than the marker: not qsched's, even with a dead pid.
  const long dead = test::unused_pid();
  const std::string before = dir + "/notes.txt.tmp." + std::to_string(dead);
  test::write_file(before, "older");
  fs::last_write_time(before, fs::file_time_type::clock::now() - std::chrono::hours(24));
  claim_output_dir(dir, "train", false, true);
  const std::string stale = dir + "/checkpoint.pt.tmp." + std::to_string(dead);
  const std::string alive = dir + "/metrics.jsonl.tmp.1";  // pid 1 always exists
  const std::string other = dir + "/data.tmp.x1";
  for (const auto& f : {stale, alive, other}) test::write_file(f, "partial");
  EXPECT_EQ(remove_stale_temporaries(dir), 1);
  EXPECT_FALSE(file_exists(stale));
  EXPECT_TRUE(file_exists(alive));
  EXPECT_TRUE(file_exists(other));
  EXPECT_TRUE(file_exists(before));
  // No marker: nothing is removed.
  test::write_file(d.file("plain/x.tmp." + std::to_string(dead)), "y");
  EXPECT_EQ(remove_stale_temporaries(d.file("plain")), 0);
}

}  // namespace
}  // namespace qsched
