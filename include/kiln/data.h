// Data input: the IDX file format (MNIST, Fashion-MNIST), the Fashion-MNIST loader and a small
// tf.data-like Dataset pipeline (shuffle, batch, map, prefetch) for training loops.
//
//   FashionMnist d = load_fashion_mnist();
//   Dataset ds = Dataset(d.train_images, d.train_labels).shuffle(42).batch(128).prefetch(2);
//   for (int64_t epoch = 0; epoch < 10; ++epoch)
//     for (auto it = ds.begin_epoch(epoch); auto batch = it.next();) train_step(batch->x,
//     batch->y);
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "kiln/tensor.h"

namespace kiln {

// ---- IDX ---------------------------------------------------------------------------------

// Reads an IDX file (http://yann.lecun.com/exdb/mnist/ format), raw or gzip-compressed (detected
// by the gzip magic 1f 8b, not by the file name). The header is 0x00 0x00 <type> <ndims>, then
// ndims big-endian uint32 dims, then exactly prod(dims) big-endian elements.
// Type byte -> dtype: 0x08 uint8 -> uint8, 0x09 int8 -> int8, 0x0B int16 -> int32 (widened),
// 0x0C int32 -> int32, 0x0D float32 -> float32, 0x0E float64 -> float64.
// Returns a tensor of shape dims (ndims 0 gives a rank-0 tensor of one element).
// Throws FormatError naming `path`, the field and what was expected when the file cannot be
// opened, the magic/type/ndims is wrong, the dims product overflows, the data is shorter or
// longer than prod(dims), or the gzip stream is corrupt. Memory is only ever allocated for data
// that is actually present, so a header claiming 10^12 elements fails cleanly.
Tensor read_idx(const std::string& path);

// ---- Fashion-MNIST -----------------------------------------------------------------------

struct FashionMnist {
  Tensor train_images;  // [60000, 28, 28, 1] float32 in [0, 1]
  Tensor train_labels;  // [60000] int32 in [0, 9]
  Tensor test_images;   // [10000, 28, 28, 1] float32 in [0, 1]
  Tensor test_labels;   // [10000] int32 in [0, 9]
};

// The directory load_fashion_mnist("") reads: $KILN_DATA_DIR when set (or its fashion-mnist/
// subdirectory when that holds the files), else /usr/share/datasets/fashion-mnist, where the
// Debian package dataset-fashion-mnist installs the files.
std::string default_fashion_mnist_dir();

// Loads {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] from `dir` ("" = the default dir).
// Images must be uint8 [N, 28, 28] and labels uint8 [N] with values < 10.
// Throws FormatError when a file is missing (the message names the directory tried and says
// "install the Debian package dataset-fashion-mnist or pass --data DIR"), is malformed, or when
// the image and label counts differ.
FashionMnist load_fashion_mnist(const std::string& dir = "");

// ---- Dataset -----------------------------------------------------------------------------

// One batch: x holds B examples ([B, ...] as the images), y their labels ([B, ...]).
struct Batch {
  Tensor x;
  Tensor y;
};

class DatasetIterator;

// An immutable description of an input pipeline over in-memory examples. Each builder method
// returns a new Dataset; the receiver is unchanged. Whatever order the builders are called in,
// the stages run as: shuffle examples -> group into batches -> shard -> maps (in the order
// added) -> prefetch. A Dataset is cheap to copy (tensors are shared handles, never copied).
class Dataset {
 public:
  // images [N, ...] and labels [N, ...] of any dtypes. Throws ShapeError when either is rank 0
  // or their first dims differ, ValueError when either is undefined.
  Dataset(Tensor images, Tensor labels);

  // Shuffles examples every epoch; epoch k uses a permutation that depends only on (seed, k),
  // so runs are reproducible and epochs differ.
  Dataset shuffle(uint64_t seed) const;
  // Groups `size` examples per batch; the last batch is smaller unless drop_remainder, which
  // drops it. Default without batch(): size 1. Throws ValueError when size < 1.
  Dataset batch(int64_t size, bool drop_remainder = false) const;
  // Keeps only part `index` of `num_shards` of every batch (data-parallel training: each rank
  // takes its share of the same global batch). A batch of c examples is split into contiguous
  // parts of floor(c/n) or floor(c/n) + 1 examples, part i holding rows
  // [floor(i*c/n), floor((i+1)*c/n)), so a part may be empty when c < n. Runs after batch() and
  // before the maps; num_batches() is unchanged. Throws ValueError unless num_shards >= 1 and
  // 0 <= index < num_shards.
  Dataset shard(int64_t num_shards, int64_t index) const;
  // Applies fn to every batch (on the prefetch thread when prefetching, so fn must not touch
  // state the consumer uses). Exceptions from fn reach the consumer's next().
  Dataset map(std::function<Batch(Batch)> fn) const;
  // A map computing x = (x - mean) / stddev into a new tensor; x must be float32 or float64
  // (else DTypeError from next()). Throws ValueError unless stddev > 0 and both are finite.
  Dataset normalize(double mean, double stddev) const;
  // Produces batches on a background thread, at most `depth` ahead of the consumer; 0 turns
  // prefetching off. The order of batches is exactly that without prefetch.
  // Throws ValueError when depth < 0.
  Dataset prefetch(int64_t depth) const;

  int64_t num_examples() const;
  // Batches per epoch (counts the smaller last batch unless drop_remainder).
  int64_t num_batches() const;

  // Starts epoch `epoch` (>= 0, else ValueError). The iterator holds what it needs, so it may
  // outlive this Dataset.
  DatasetIterator begin_epoch(int64_t epoch) const;

  struct Plan;

 private:
  explicit Dataset(std::shared_ptr<const Plan> plan) : plan_(std::move(plan)) {}
  std::shared_ptr<const Plan> plan_;
};

// Yields the batches of one epoch. Move-only. Destroying it early (a training loop that breaks)
// stops and joins the prefetch thread promptly.
class DatasetIterator {
 public:
  DatasetIterator(DatasetIterator&&) noexcept;
  DatasetIterator& operator=(DatasetIterator&&) noexcept;
  ~DatasetIterator();

  // The next batch, or nullopt at the end of the epoch. Rethrows an exception raised while
  // producing the batch (in a map, or on the prefetch thread); after that it returns nullopt.
  std::optional<Batch> next();

  struct State;

 private:
  friend class Dataset;
  explicit DatasetIterator(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace kiln
