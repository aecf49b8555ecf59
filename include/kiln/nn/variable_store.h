// VariableStore: owns variables apart from the layers that use them, under full names like
// "encoder/dense_1/kernel". Layers hold Variable handles; the store is how weights are found by
// name, counted, saved and shared.
//
// Name scopes (thread-local, nested, RAII), like TF1's variable_scope:
//
//   kiln::VariableStore store(/*seed=*/7);
//   {
//     kiln::VariableStore::Scope s(store, "encoder", /*reuse=*/true);
//     auto w = store.get_or_create("w", {4, 4});        // "encoder/w", created
//     auto w2 = store.get_or_create("w", {4, 4});       // the same variable
//   }
//
// Outside a reuse scope, creating a name that exists is a ValueError naming it. Inside one,
// an existing variable is returned (its shape must match, else ShapeError naming the variable
// and both shapes) and a missing one is created (TF's AUTO_REUSE). Reuse is inherited: a scope
// nested in a reuse scope reuses too. All methods are thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "kiln/cache_report.h"
#include "kiln/nn/initializers.h"
#include "kiln/nn/variable.h"

namespace kiln {

class VariableStore {
 public:
  // A store with its own seed, or (nullopt) one that follows global_seed().
  explicit VariableStore(std::optional<uint64_t> seed = std::nullopt);
  ~VariableStore();
  VariableStore(const VariableStore&) = delete;
  VariableStore& operator=(const VariableStore&) = delete;

  // The process-wide store layers use unless given another (Layer::set_store).
  static VariableStore& default_store();

  // The variable `scope_prefix() + name`, created with init(shape, dtype, seed_for(full name))
  // if absent. See the class comment for reuse rules.
  Variable get_or_create(const std::string& name, const Shape& shape, DType dtype = float32,
                         const Initializer& init = initializers::glorot_uniform(),
                         bool trainable = true);

  // Registers an existing variable under its own (full) name, e.g. one loaded from a file.
  // ValueError if the name is taken by another variable.
  void add(const Variable& v);

  bool contains(const std::string& full_name) const;
  // Forgets the variable `full_name` (handles held elsewhere stay valid); false if absent.
  bool remove(const std::string& full_name);
  // ValueError naming `full_name` when absent.
  Variable get(const std::string& full_name) const;
  std::optional<Variable> find(const std::string& full_name) const;
  // In creation order.
  std::vector<Variable> variables() const;
  std::vector<Variable> trainable_variables() const;
  // Variables whose full name starts with `prefix` (e.g. "encoder/").
  std::vector<Variable> variables_under(const std::string& prefix) const;
  size_t size() const;
  // Total elements over all variables (each counted once).
  int64_t count_params() const;
  // Forgets every variable (handles held elsewhere stay valid).
  void clear();

  // Count, bytes, shared (used directly by more than one live layer) and per-owner totals of
  // this store's variables, with one row each (kiln/cache_report.h).
  VariablesSection cache_info() const;

  // `base` if no variable name or scope in the store starts with "base/" or equals it, else
  // "base_1", "base_2", ... (the first free one).
  std::string unique_name(const std::string& base) const;

  // The current thread's scope prefix for this store: "" or "encoder/block/".
  std::string scope_prefix() const;
  // Whether the current thread is inside a reuse scope of this store.
  bool reuse() const;

  uint64_t seed() const;
  void set_seed(uint64_t seed);
  // The initializer seed of variable `full_name`: a hash of (seed(), full_name).
  uint64_t seed_for(const std::string& full_name) const;

  // RAII name scope on `store` for the current thread. `name` must be non-empty and must not
  // contain '/' at either end (ValueError).
  class Scope {
   public:
    Scope(VariableStore& store, const std::string& name, bool reuse = false);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    VariableStore* store_;
  };

 private:
  mutable std::mutex mu_;
  std::optional<uint64_t> seed_;
  std::map<std::string, Variable> by_name_;
  std::vector<Variable> order_;
};

}  // namespace kiln
