// InstanceToken: the identity of an object for kiln's per-instance caches (kiln/cache.h has
// the design). A 64-bit id drawn lazily from a counter that never repeats; the destructor tells
// every cache to drop the id's entries.
#pragma once

#include <atomic>
#include <cstdint>

namespace kiln {

namespace detail {
uint64_t next_instance_id();
void instance_expired(uint64_t id);
}  // namespace detail

// The identity of an object for caches. Copies and moves are new objects: a fresh identity.
class InstanceToken {
 public:
  InstanceToken() = default;
  InstanceToken(const InstanceToken&) noexcept {}
  InstanceToken& operator=(const InstanceToken&) noexcept { return *this; }
  ~InstanceToken() { reset(); }

  // The id (assigned on first use; never 0, never reused in this process).
  uint64_t id() const {
    uint64_t v = id_.load(std::memory_order_acquire);
    return v ? v : assign();
  }
  // Whether an id was assigned (some cache may hold entries for it).
  bool used() const { return id_.load(std::memory_order_acquire) != 0; }
  // Ends this identity now: every cache drops its entries, and the next id() is a new one.
  // For objects that are recycled (kiln's tensor pool) rather than destroyed.
  void reset() {
    if (id_.load(std::memory_order_relaxed) == 0) return;  // never used: nothing to tell
    uint64_t v = id_.exchange(0, std::memory_order_acq_rel);
    if (v) detail::instance_expired(v);
  }

 private:
  uint64_t assign() const;
  mutable std::atomic<uint64_t> id_{0};
};

}  // namespace kiln
