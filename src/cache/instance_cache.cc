// The core of CachedPerInstance: slots by instance id, an intrusive LRU list of ready slots, and
// the exactly-once protocol (one computing thread per slot, the others wait on done_).
#include <thread>

#include "cache/registry.h"
#include "kiln/cache.h"
#include "kiln/error.h"

namespace kiln {

namespace detail {

uint64_t next_instance_id() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace detail

uint64_t InstanceToken::assign() const {
  uint64_t expected = 0;
  const uint64_t mine = detail::next_instance_id();
  if (id_.compare_exchange_strong(expected, mine, std::memory_order_acq_rel)) return mine;
  return expected;  // another thread assigned first
}

namespace detail {

struct InstanceCacheCore::Slot {
  enum class State { kComputing, kReady };
  uint64_t id = 0;
  uint64_t version = 0;
  State state = State::kComputing;
  bool discard = false;  // invalidated or expired while computing: do not store the result
  std::thread::id owner;
  Box* box = nullptr;
  uint64_t bytes = 0;
  Slot* prev = nullptr;  // LRU links (ready slots only)
  Slot* next = nullptr;
};

namespace {
void delete_boxes(std::vector<InstanceCacheCore::Box*>& dead) {
  for (InstanceCacheCore::Box* b : dead) delete b;
  dead.clear();
}
}  // namespace

InstanceCacheCore::InstanceCacheCore(std::string name, CacheLimits limits, bool use_default)
    : name_(std::move(name)) {
  stats_.name = name_;
  stats_.limits = use_default ? instance_cache_limits() : limits;
  if (stats_.limits.max_entries == 0 && !use_default) {
    throw ValueError("cache '" + name_ + "': max_entries must be >= 1");
  }
  cache::register_instance_cache(this);
}

InstanceCacheCore::~InstanceCacheCore() {
  cache::unregister_instance_cache(this);
  for (auto& [id, s] : slots_) {
    delete s->box;
    delete s;
  }
}

void InstanceCacheCore::unlink(Slot* s) {
  (s->prev ? s->prev->next : head_) = s->next;
  (s->next ? s->next->prev : tail_) = s->prev;
  s->prev = s->next = nullptr;
}

void InstanceCacheCore::push_front(Slot* s) {
  s->prev = nullptr;
  s->next = head_;
  (head_ ? head_->prev : tail_) = s;
  head_ = s;
}

bool InstanceCacheCore::drop(std::unordered_map<uint64_t, Slot*>::iterator it,
                             std::vector<Box*>& dead) {
  Slot* s = it->second;
  if (s->state == Slot::State::kComputing) {  // its computing thread removes it when done
    s->discard = true;
    return false;
  }
  unlink(s);
  stats_.entries -= 1;
  stats_.bytes -= s->bytes;
  dead.push_back(s->box);
  slots_.erase(it);
  delete s;
  return true;
}

void InstanceCacheCore::trim(std::vector<Box*>& dead) {
  const CacheLimits& l = stats_.limits;
  while (tail_ && ((l.max_entries && stats_.entries > l.max_entries) ||
                   (l.max_bytes && stats_.bytes > l.max_bytes))) {
    drop(slots_.find(tail_->id), dead);
    stats_.evictions += 1;
  }
}

bool InstanceCacheCore::find(uint64_t id, uint64_t version, Copy copy, void* out) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = slots_.find(id);
  if (it == slots_.end()) return false;
  Slot* s = it->second;
  if (s->state != Slot::State::kReady || s->version != version) return false;
  stats_.hits += 1;
  if (s != head_) {
    unlink(s);
    push_front(s);
  }
  copy(*s->box, out);
  return true;
}

void InstanceCacheCore::get(uint64_t id, uint64_t version, Make make, void* ctx, Copy copy,
                            void* out) {
  std::vector<Box*> dead;
  std::unique_lock<std::mutex> lock(mu_);
  Slot* s = nullptr;
  for (;;) {
    auto it = slots_.find(id);
    if (it == slots_.end()) {
      s = new Slot;
      s->id = id;
      slots_.emplace(id, s);
      stats_.misses += 1;
      break;
    }
    s = it->second;
    if (s->state == Slot::State::kComputing) {
      if (s->owner == std::this_thread::get_id()) {
        throw StateError("cache '" + name_ +
                         "': the computation of an entry asked the same cache for the same "
                         "object (it would wait for itself)");
      }
      done_.wait(lock);
      continue;  // the slot may be gone (failed, discarded): look again
    }
    if (s->version == version) {  // became ready while we waited, or raced us to it
      stats_.hits += 1;
      if (s != head_) {
        unlink(s);
        push_front(s);
      }
      copy(*s->box, out);
      return;
    }
    // Stale: recompute in place. The old value goes now (nobody else can read it any more).
    unlink(s);
    stats_.entries -= 1;
    stats_.bytes -= s->bytes;
    dead.push_back(s->box);
    s->box = nullptr;
    s->bytes = 0;
    stats_.version_recomputes += 1;
    break;
  }
  s->state = Slot::State::kComputing;
  s->discard = false;
  s->version = version;
  s->owner = std::this_thread::get_id();
  lock.unlock();
  delete_boxes(dead);

  Box* box = nullptr;
  uint64_t bytes = 0;
  try {
    box = make(ctx, &bytes);
  } catch (...) {
    lock.lock();
    slots_.erase(id);
    delete s;
    done_.notify_all();
    throw;
  }
  lock.lock();
  copy(*box, out);
  if (s->discard) {  // invalidated or its object expired meanwhile: hand out, do not keep
    slots_.erase(id);
    delete s;
    dead.push_back(box);
  } else {
    s->state = Slot::State::kReady;
    s->box = box;
    s->bytes = bytes;
    push_front(s);
    stats_.entries += 1;
    stats_.bytes += bytes;
    trim(dead);
  }
  done_.notify_all();
  lock.unlock();
  delete_boxes(dead);
}

void InstanceCacheCore::invalidate(uint64_t id) {
  std::vector<Box*> dead;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = slots_.find(id);
    if (it != slots_.end()) {
      drop(it, dead);
      stats_.invalidations += 1;
    }
  }
  delete_boxes(dead);
}

void InstanceCacheCore::clear() {
  std::vector<Box*> dead;
  clear(dead);
  delete_boxes(dead);
}

void InstanceCacheCore::clear(std::vector<Box*>& dead) {
  std::lock_guard<std::mutex> lock(mu_);
  const size_t before = dead.size();
  for (auto it = slots_.begin(); it != slots_.end();) {
    auto next = std::next(it);
    drop(it, dead);
    it = next;
  }
  stats_.invalidations += dead.size() - before;
}

void InstanceCacheCore::expire(uint64_t id, std::vector<Box*>& dead) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = slots_.find(id);
  if (it == slots_.end()) return;
  drop(it, dead);
  stats_.expirations += 1;
}

void InstanceCacheCore::set_limits(CacheLimits limits) {
  std::vector<Box*> dead;
  set_limits(limits, dead);
  delete_boxes(dead);
}

void InstanceCacheCore::set_limits(CacheLimits limits, std::vector<Box*>& dead) {
  if (limits.max_entries == 0) {
    throw ValueError("cache '" + name_ + "': max_entries must be >= 1");
  }
  std::lock_guard<std::mutex> lock(mu_);
  stats_.limits = limits;
  trim(dead);
}

CacheStats InstanceCacheCore::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

int64_t InstanceCacheCore::entry_bytes(uint64_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = slots_.find(id);
  if (it == slots_.end() || it->second->state != Slot::State::kReady) return -1;
  return static_cast<int64_t>(it->second->bytes);
}

}  // namespace detail
}  // namespace kiln
