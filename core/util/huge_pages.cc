#include "core/util/huge_pages.h"

#include <sys/mman.h>

#include <cstdint>
#include <new>
#include <utility>

namespace align2 {
namespace {
constexpr std::size_t kHuge = std::size_t(2) << 20;
}  // namespace

HugePageBuffer::HugePageBuffer(std::size_t bytes) {
  if (bytes == 0) return;
  // Map one huge page more than needed, then unmap the slack on both sides of the aligned span.
  const std::size_t len = (bytes + kHuge - 1) / kHuge * kHuge;
  void* raw = mmap(nullptr, len + kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) throw std::bad_alloc();
  const std::uintptr_t start = std::uintptr_t(raw), aligned = (start + kHuge - 1) / kHuge * kHuge;
  if (aligned > start) munmap(raw, aligned - start);
  munmap(reinterpret_cast<void*>(aligned + len), start + kHuge - aligned);  // never empty: aligned < start + 2 MiB
  data_ = reinterpret_cast<void*>(aligned);
  len_ = len;
  madvise(data_, len_, MADV_HUGEPAGE);  // ignored where transparent huge pages are off
}

HugePageBuffer::~HugePageBuffer() { release_mapping(data_, len_); }

HugePageBuffer::HugePageBuffer(HugePageBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), len_(std::exchange(other.len_, 0)) {}

HugePageBuffer& HugePageBuffer::operator=(HugePageBuffer&& other) noexcept {
  if (this != &other) {
    release_mapping(data_, len_);
    data_ = std::exchange(other.data_, nullptr);
    len_ = std::exchange(other.len_, 0);
  }
  return *this;
}

void* HugePageBuffer::release() {
  len_ = 0;
  return std::exchange(data_, nullptr);
}

void HugePageBuffer::release_mapping(void* data, std::size_t mapped_bytes) {
  if (data) munmap(data, mapped_bytes);
}

}  // namespace align2
