// Large zero-filled buffers of their own mapping, 2 MiB-aligned and advised to the kernel as
// transparent huge pages (MADV_HUGEPAGE; ignored where they are off): a buffer of a GB read at
// random (the index merge's key table) or streamed through (model weights) then costs one TLB
// entry per 2 MiB instead of per 4 KiB, and a page fault per 2 MiB.
#pragma once

#include <cstddef>

namespace align2 {

// One anonymous mapping of at least `bytes` zero bytes. Move-only; unmapped at destruction
// unless release()d.
class HugePageBuffer {
 public:
  HugePageBuffer() = default;
  // Throws std::bad_alloc when the mapping fails.
  explicit HugePageBuffer(std::size_t bytes);
  ~HugePageBuffer();
  HugePageBuffer(HugePageBuffer&& other) noexcept;
  HugePageBuffer& operator=(HugePageBuffer&& other) noexcept;
  HugePageBuffer(const HugePageBuffer&) = delete;
  HugePageBuffer& operator=(const HugePageBuffer&) = delete;

  void* data() const { return data_; }
  std::size_t mapped_bytes() const { return len_; }  // bytes rounded up to 2 MiB
  // Gives up ownership: the caller unmaps (release_mapping) what data() pointed to.
  void* release();
  // Unmaps what release() gave up (`mapped_bytes` as it was then).
  static void release_mapping(void* data, std::size_t mapped_bytes);

 private:
  void* data_ = nullptr;
  std::size_t len_ = 0;
};

}  // namespace align2
