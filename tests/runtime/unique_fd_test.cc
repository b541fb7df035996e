// UniqueFd and MappedRegion (runtime/unique_fd.h): what they hold goes when they go, and
// only then.
#include "runtime/unique_fd.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstring>

namespace kchain {
namespace {

bool IsOpen(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

TEST(UniqueFd, ClosesOnceWhenItGoes) {
  int raw = -1;
  {
    UniqueFd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(fd.valid());
    raw = fd.get();
    UniqueFd moved(std::move(fd));
    EXPECT_FALSE(fd.valid());
    EXPECT_EQ(moved.get(), raw);
    EXPECT_TRUE(IsOpen(raw));
  }
  EXPECT_FALSE(IsOpen(raw));
}

TEST(UniqueFd, ReleaseGivesItUpAndResetReplacesIt) {
  UniqueFd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  const int first = fd.release();
  EXPECT_FALSE(fd.valid());
  EXPECT_TRUE(IsOpen(first));
  fd.reset(first);
  const int second = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  fd.reset(second);
  EXPECT_FALSE(IsOpen(first));
  EXPECT_TRUE(IsOpen(second));
  fd = UniqueFd();
  EXPECT_FALSE(IsOpen(second));
}

// mincore() fails with ENOMEM on an address that is not mapped.
bool IsMapped(void* addr) {
  unsigned char vec = 0;
  return ::mincore(addr, 1, &vec) == 0;
}

TEST(MappedRegion, UnmapsWhenItGoesAndNotAfterRelease) {
  UniqueFd fd(::memfd_create("kchain-test", MFD_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  ASSERT_EQ(::ftruncate(fd.get(), 4096), 0);
  void* addr = nullptr;
  {
    MappedRegion region = MappedRegion::MapShared(fd.get(), 4096);
    ASSERT_TRUE(region.valid());
    EXPECT_EQ(region.size(), 4096u);
    std::memset(region.data(), 7, region.size());
    addr = region.data();
    MappedRegion moved = std::move(region);
    EXPECT_FALSE(region.valid());
    EXPECT_TRUE(IsMapped(addr));
  }
  EXPECT_FALSE(IsMapped(addr));

  MappedRegion kept = MappedRegion::MapShared(fd.get(), 4096);
  ASSERT_TRUE(kept.valid());
  EXPECT_EQ(static_cast<int>(kept.data()[0]), 7);  // the same file's bytes
  std::byte* bytes = kept.release();
  EXPECT_FALSE(kept.valid());
  EXPECT_TRUE(IsMapped(bytes));
  ::munmap(bytes, 4096);
  // A mapping that cannot be made is an empty region.
  EXPECT_FALSE(MappedRegion::MapShared(-1, 4096).valid());
}

}  // namespace
}  // namespace kchain
