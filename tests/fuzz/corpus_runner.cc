// Runs a fuzz target's corpus as a regression test without libFuzzer: every
// file under the directories given on the command line becomes one gtest
// case that passes `LLVMFuzzerTestOneInput` the file's bytes. A crash, an
// abort or a sanitizer report (under --config=asan) fails the test, so the
// inputs that once found a bug keep guarding against it under plain
// `bazel test`.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "gtest/gtest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

class CorpusInputTest : public testing::Test {
 public:
  explicit CorpusInputTest(std::string path) : path_(std::move(path)) {}

  void TestBody() override {
    std::ifstream in(path_, std::ios::binary);
    ASSERT_TRUE(in) << "cannot read " << path_;
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                               std::istreambuf_iterator<char>());
    // libFuzzer never passes a null pointer, even for an empty input.
    uint8_t empty = 0;
    EXPECT_EQ(LLVMFuzzerTestOneInput(bytes.empty() ? &empty : bytes.data(),
                                     bytes.size()),
              0);
  }

 private:
  std::string path_;
};

// Registers one test per regular file under `dir`, sorted by name.
int RegisterCorpus(const std::string& dir) {
  std::vector<std::string> files;
  std::error_code ec;
  for (const auto& entry :
       std::filesystem::recursive_directory_iterator(dir, ec)) {
    if (entry.is_regular_file()) files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  const std::string suite =
      "Corpus_" + std::filesystem::path(dir).filename().string();
  for (const std::string& file : files) {
    std::string name =
        std::filesystem::path(file).lexically_relative(dir).string();
    testing::RegisterTest(
        suite.c_str(), name.c_str(), nullptr, nullptr, __FILE__, __LINE__,
        [file]() -> testing::Test* { return new CorpusInputTest(file); });
  }
  return static_cast<int>(files.size());
}

}  // namespace

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  if (argc < 2) {
    fprintf(stderr, "usage: %s CORPUS_DIR...\n", argv[0]);
    return 2;
  }
  int total = 0;
  for (int i = 1; i < argc; ++i) total += RegisterCorpus(argv[i]);
  if (total == 0) {
    fprintf(stderr, "no corpus files found\n");
    return 1;
  }
  return RUN_ALL_TESTS();
}
