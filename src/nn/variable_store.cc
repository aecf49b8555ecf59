// VariableStore: variables by full name, plus thread-local name scopes.
#include "kiln/nn/variable_store.h"

#include <algorithm>

#include "cache/registry.h"
#include "core/context.h"
#include "kiln/error.h"

namespace kiln {

namespace {

struct ScopeEntry {
  const VariableStore* store;
  std::string name;
  bool reuse;
};

// One stack per thread; entries of different stores interleave, each store reads its own.
std::vector<ScopeEntry>& scope_stack() {
  thread_local std::vector<ScopeEntry> stack;
  return stack;
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

}  // namespace

VariableStore::VariableStore(std::optional<uint64_t> seed) : seed_(seed) {
  cache::store_created(this);  // for kiln::cache_report()
}
VariableStore::~VariableStore() { cache::store_destroyed(this); }

VariableStore& VariableStore::default_store() {
  static VariableStore* store = new VariableStore();  // never destroyed: layers may outlive main
  return *store;
}

std::string VariableStore::scope_prefix() const {
  std::string prefix;
  for (const ScopeEntry& e : scope_stack()) {
    if (e.store == this) prefix += e.name + "/";
  }
  return prefix;
}

bool VariableStore::reuse() const {
  for (const ScopeEntry& e : scope_stack()) {
    if (e.store == this && e.reuse) return true;
  }
  return false;
}

Variable VariableStore::get_or_create(const std::string& name, const Shape& shape, DType dtype,
                                      const Initializer& init, bool trainable) {
  if (name.empty()) throw ValueError("VariableStore::get_or_create: empty variable name");
  // Inside a traced function, variables live under its name and later traces reuse them.
  detail::TraceScope* ts = detail::thread_context().trace_scope;
  const std::string full = (ts ? ts->name + "/" : std::string()) + scope_prefix() + name;
  const bool reusing = ts || reuse();
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = by_name_.find(full);
    if (it != by_name_.end()) {
      if (!reusing) {
        throw ValueError("variable '" + full +
                         "' already exists; to reuse it, create it inside a "
                         "VariableStore::Scope with reuse=true");
      }
      const Variable& v = it->second;
      if (v.shape() != shape || v.dtype() != dtype) {
        throw ShapeError("variable '" + full + "' exists with shape " + to_string(v.shape()) + " " +
                         std::string(dtype_name(v.dtype())) + ", requested shape " +
                         to_string(shape) + " " + std::string(dtype_name(dtype)));
      }
      return v;
    }
  }
  // Initialize outside the lock: big initializers should not serialize other threads.
  Tensor value = init(shape, dtype, seed_for(full));
  if (value.shape() != shape || value.dtype() != dtype) {
    throw ShapeError("initializer " + init.name() + " for variable '" + full + "' returned " +
                     to_string(value.shape()) + " " + std::string(dtype_name(value.dtype())) +
                     ", expected " + to_string(shape) + " " + std::string(dtype_name(dtype)));
  }
  Variable v(full, value, trainable);
  std::lock_guard<std::mutex> lock(mu_);
  auto [it, inserted] = by_name_.emplace(full, v);
  if (!inserted) {
    // Another thread created it meanwhile: same rules as above, but simply hand back theirs.
    if (!reusing) throw ValueError("variable '" + full + "' already exists");
    return it->second;
  }
  order_.push_back(v);
  if (ts) {
    ++ts->variables_created;
    ts->undo.push_back([this, full] { remove(full); });
  }
  return v;
}

bool VariableStore::remove(const std::string& full_name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_name_.find(full_name);
  if (it == by_name_.end()) return false;
  order_.erase(std::find(order_.begin(), order_.end(), it->second));
  by_name_.erase(it);
  return true;
}

void VariableStore::add(const Variable& v) {
  if (!v.defined()) throw ValueError("VariableStore::add: undefined variable");
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_name_.find(v.name());
  if (it != by_name_.end()) {
    if (it->second == v) return;
    throw ValueError("VariableStore::add: a different variable named '" + v.name() +
                     "' already exists");
  }
  by_name_.emplace(v.name(), v);
  order_.push_back(v);
}

bool VariableStore::contains(const std::string& full_name) const {
  std::lock_guard<std::mutex> lock(mu_);
  return by_name_.count(full_name) != 0;
}

std::optional<Variable> VariableStore::find(const std::string& full_name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_name_.find(full_name);
  if (it == by_name_.end()) return std::nullopt;
  return it->second;
}

Variable VariableStore::get(const std::string& full_name) const {
  std::optional<Variable> v = find(full_name);
  if (!v) throw ValueError("VariableStore: no variable named '" + full_name + "'");
  return *v;
}

std::vector<Variable> VariableStore::variables() const {
  std::lock_guard<std::mutex> lock(mu_);
  return order_;
}

std::vector<Variable> VariableStore::trainable_variables() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Variable> out;
  for (const Variable& v : order_) {
    if (v.trainable()) out.push_back(v);
  }
  return out;
}

std::vector<Variable> VariableStore::variables_under(const std::string& prefix) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Variable> out;
  for (const Variable& v : order_) {
    if (v.name().compare(0, prefix.size(), prefix) == 0) out.push_back(v);
  }
  return out;
}

size_t VariableStore::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return order_.size();
}

int64_t VariableStore::count_params() const {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t n = 0;
  for (const Variable& v : order_) n += v.shape().numel();
  return n;
}

void VariableStore::clear() {
  std::lock_guard<std::mutex> lock(mu_);
  by_name_.clear();
  order_.clear();
}

std::string VariableStore::unique_name(const std::string& base) const {
  const std::string prefix = scope_prefix();
  std::lock_guard<std::mutex> lock(mu_);
  auto taken = [&](const std::string& candidate) {
    std::string full = prefix + candidate;
    // by_name_ is sorted, so the names starting with `full` are contiguous from lower_bound.
    for (auto it = by_name_.lower_bound(full); it != by_name_.end(); ++it) {
      const std::string& n = it->first;
      if (n.compare(0, full.size(), full) != 0) break;
      if (n.size() == full.size() || n[full.size()] == '/') return true;
    }
    return false;
  };
  if (!taken(base)) return base;
  for (int i = 1;; ++i) {
    std::string candidate = base + "_" + std::to_string(i);
    if (!taken(candidate)) return candidate;
  }
}

uint64_t VariableStore::seed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return seed_ ? *seed_ : global_seed();
}

void VariableStore::set_seed(uint64_t seed) {
  std::lock_guard<std::mutex> lock(mu_);
  seed_ = seed;
}

uint64_t VariableStore::seed_for(const std::string& full_name) const {
  return splitmix64(splitmix64(seed()) ^ fnv1a(full_name));
}

VariableStore::Scope::Scope(VariableStore& store, const std::string& name, bool reuse)
    : store_(&store) {
  if (name.empty() || name.front() == '/' || name.back() == '/') {
    throw ValueError("VariableStore::Scope: bad scope name '" + name +
                     "' (must be non-empty and not start or end with '/')");
  }
  scope_stack().push_back({store_, name, reuse});
}

VariableStore::Scope::~Scope() {
  // Scopes are RAII on one thread, so ours is the innermost entry of this store.
  auto& stack = scope_stack();
  for (auto it = stack.rbegin(); it != stack.rend(); ++it) {
    if (it->store == store_) {
      stack.erase(std::next(it).base());
      return;
    }
  }
}

}  // namespace kiln
