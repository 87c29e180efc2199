#include "adapters/redact.h"

#include "gtest/gtest.h"

namespace echelon {
namespace {

constexpr char kKey[] = "sk-proj-Zq81mN0pLx4vR7tY2wE5";

TEST(RedactTest, RemovesTheWholeKeyAndAnyEightCharacterPieceOfIt) {
  EXPECT_EQ(RedactSecrets(std::string("bad key ") + kKey + " given", kKey),
            "bad key [redacted] given");
  // OpenAI's own masked echo keeps the last characters.
  EXPECT_EQ(
      RedactSecrets("Incorrect API key provided: ...0pLx4vR7tY2wE5.", kKey),
      "Incorrect API key provided: ...[redacted].");
  EXPECT_EQ(RedactSecrets("fragment mN0pLx4v here", kKey),
            "fragment [redacted] here");
}

TEST(RedactTest, RemovesKeyShapedTokensEvenWithoutTheSecret) {
  EXPECT_EQ(RedactSecrets("Incorrect API key provided: sk-abcdefgh1234.", ""),
            "Incorrect API key provided: [redacted]");
  EXPECT_EQ(RedactSecrets("header was Bearer abcdefghijkl", ""),
            "header was [redacted]");
}

TEST(RedactTest, LeavesOrdinaryTextAndShortOverlapsAlone) {
  std::string text = "rate limit exceeded for model gpt-4o (sk-short)";
  EXPECT_EQ(RedactSecrets(text, kKey), text);
  EXPECT_EQ(RedactSecrets("proj", kKey), "proj");
  EXPECT_EQ(RedactSecrets("", kKey), "");
}

}  // namespace
}  // namespace echelon
