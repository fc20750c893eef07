// SHA-256 and hex (core/util/digest.h) against the FIPS 180-4 / NIST CAVS known answers.
#include "core/util/digest.h"

#include <gtest/gtest.h>

#include <string>

namespace align2 {
namespace {

TEST(Digest, Sha256KnownAnswers) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256_hex(std::string(1000000, 'a')), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  EXPECT_EQ(sha256_hex("abc", 16), "ba7816bf8f01cfea414140de5dae2223");
}

TEST(Digest, IncrementalEqualsOneShotAndStartsOverAfterFinal) {
  const std::string text(1000, 'x');
  Sha256 h;
  for (std::size_t at = 0; at < text.size(); at += 7) h.update(text.substr(at, 7));
  EXPECT_EQ(h.hex(), sha256_hex(text));
  h.update("abc");  // a fresh message after hex()
  EXPECT_EQ(h.hex(), sha256_hex("abc"));
  EXPECT_THROW(h.hex(0), std::logic_error);
  EXPECT_THROW(h.hex(33), std::logic_error);
}

TEST(Digest, HexRoundTrip) {
  const std::uint8_t bytes[4] = {0x00, 0x7f, 0xa0, 0xff};
  EXPECT_EQ(to_hex(bytes, 4), "007fa0ff");
  std::uint8_t back[4] = {};
  EXPECT_TRUE(from_hex("007fa0ff", back, 4));
  EXPECT_EQ(std::string(reinterpret_cast<char*>(back), 4), std::string(reinterpret_cast<const char*>(bytes), 4));
  EXPECT_FALSE(from_hex("007FA0FF", back, 4));  // lowercase only
  EXPECT_FALSE(from_hex("007fa0f", back, 4));
}

}  // namespace
}  // namespace align2
