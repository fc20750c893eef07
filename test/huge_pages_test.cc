// HugePageBuffer (core/util/huge_pages.h): zero-filled, 2 MiB-aligned, one owner of its mapping.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <utility>

#include "core/util/huge_pages.h"

namespace align2 {
namespace {

constexpr std::size_t kHuge = std::size_t(2) << 20;

TEST(HugePageBuffer, ZeroFilledAlignedAndRoundedUp) {
  HugePageBuffer b(5 * kHuge + 3);
  ASSERT_NE(b.data(), nullptr);
  EXPECT_EQ(std::uintptr_t(b.data()) % kHuge, 0u);
  EXPECT_EQ(b.mapped_bytes(), 6 * kHuge);
  const auto* p = static_cast<const unsigned char*>(b.data());
  for (std::size_t i = 0; i < b.mapped_bytes(); i += 4093) ASSERT_EQ(p[i], 0) << "byte " << i;
  std::memset(b.data(), 0xAB, b.mapped_bytes());  // every byte writable
  EXPECT_EQ(p[b.mapped_bytes() - 1], 0xAB);
}

TEST(HugePageBuffer, MovesKeepOneOwner) {
  HugePageBuffer a(kHuge);
  void* data = a.data();
  HugePageBuffer b(std::move(a));
  EXPECT_EQ(a.data(), nullptr);
  EXPECT_EQ(b.data(), data);
  HugePageBuffer c(3 * kHuge);
  c = std::move(b);  // c's own mapping is unmapped, b's is now c's
  EXPECT_EQ(c.data(), data);
  EXPECT_EQ(b.data(), nullptr);
  const std::size_t len = c.mapped_bytes();
  void* released = c.release();
  EXPECT_EQ(c.data(), nullptr);
  static_cast<unsigned char*>(released)[len - 1] = 1;  // still mapped after release()
  HugePageBuffer::release_mapping(released, len);
  EXPECT_EQ(HugePageBuffer(0).data(), nullptr);
}

}  // namespace
}  // namespace align2
