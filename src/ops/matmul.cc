// matmul: [..., M, K] x [..., K, N] -> [..., M, N] with NumPy-broadcast batch dims.
// attrs = {transpose_a, transpose_b}. The fast kernel is oneDNN's f32 matmul: transposes are
// strides (no copies), batch broadcasting is oneDNN's, and the primitive is cached per shape.
// Under the mixed_bfloat16 dtype policy it is oneDNN's bf16 x bf16 -> f32 matmul over copies
// of a and b rounded to bf16 (f32 accumulation); the reference stays exact.
#include <string>

#include "core/tensor_impl.h"
#include "core/visit_dtype.h"
#include "kernels/elementwise.h"
#include "kernels/onednn/bf16_input.h"
#include "kernels/onednn/primitive_cache.h"
#include "kiln/ops.h"
#include "ops/dtype_policy.h"
#include "ops/op_def.h"
#include "ops/registry.h"

namespace kiln {
namespace {

// Problems below this many flops (2*M*N*K summed over the batch) run on one thread. Measured
// with oneDNN on these 2-core machines (median us, 1 vs 2 threads): 32^3 0.84 vs 1.92, 48^3 2.65
// vs 2.80, 64^3 4.8 vs 3.4 (but 2-thread small runs flip between levels from run to run, while
// one thread is steady), 80^3 9.2 vs 8.3, 128^3 37 vs 20. So up to ~1 MFLOP stays on one.
constexpr double kSingleThreadFlops = 1.0e6;

// Rows, inner and columns of a's and b's last two dims after the transposes.
struct Dims {
  int64_t m, k, kb, n;
};
Dims mm_dims(const Shape& a, const Shape& b, bool ta, bool tb) {
  const int ra = a.rank(), rb = b.rank();
  return {ta ? a[ra - 1] : a[ra - 2], ta ? a[ra - 2] : a[ra - 1], tb ? b[rb - 1] : b[rb - 2],
          tb ? b[rb - 2] : b[rb - 1]};
}

Shape batch_of(const Shape& s) { return Shape(s.dims().subspan(0, s.rank() - 2)); }

void matmul_infer(std::span<const Meta> in, const Attrs& attrs, std::span<Meta> out) {
  const bool ta = attrs.i(0), tb = attrs.i(1);
  auto flags = [&] {
    return std::string(" (transpose_a=") + (ta ? "true" : "false") +
           ", transpose_b=" + (tb ? "true" : "false") + ")";
  };
  require_same_dtype("matmul", in[0].dtype, in[1].dtype);
  if (in[0].dtype == DType::kBool) {
    throw DTypeError("matmul: bool tensors are not numbers; cast them first");
  }
  if (in[0].shape.rank() < 2 || in[1].shape.rank() < 2) {
    throw ShapeError("matmul: shapes " + shapes_str(in) +
                     " must both have rank >= 2 (reshape 1-D operands to [1, K] or [K, 1])");
  }
  Dims d = mm_dims(in[0].shape, in[1].shape, ta, tb);
  if (d.k != d.kb) {
    throw ShapeError("matmul: shapes " + shapes_str(in) + " do not fit: inner dims " +
                     std::to_string(d.k) + " and " + std::to_string(d.kb) + " differ" + flags());
  }
  Shape batch;
  try {
    batch = broadcast_shapes(batch_of(in[0].shape), batch_of(in[1].shape), "matmul");
  } catch (const ShapeError&) {
    throw ShapeError("matmul: shapes " + shapes_str(in) + " have batch dims that do not broadcast" +
                     flags());
  }
  batch.push_back(d.m);
  batch.push_back(d.n);
  out[0] = {batch, in[0].dtype};
}

template <typename T>
using Acc = std::conditional_t<std::is_floating_point_v<T>, double, int64_t>;

void matmul_reference(const KernelArgs& k) {
  const bool ta = k.attrs.i(0), tb = k.attrs.i(1);
  const Shape &as = k.in[0].shape(), &bs = k.in[1].shape();
  const Dims d = mm_dims(as, bs, ta, tb);
  const Shape ob = batch_of(k.out[0].shape()), ab = batch_of(as), bb = batch_of(bs);
  detail::visit_dtype(k.in[0].dtype(), [&]<typename T>() {
    if constexpr (!std::is_same_v<T, bool>) {
      const T* a = detail::ptr<T>(k.in[0]);
      const T* b = detail::ptr<T>(k.in[1]);
      T* c = detail::ptr<T>(k.out[0]);
      for (int64_t bi = 0, nb = ob.numel(); bi < nb; ++bi) {
        const T* pa = a + kernels::broadcast_offset(bi, ob, ab) * d.m * d.k;
        const T* pb = b + kernels::broadcast_offset(bi, ob, bb) * d.k * d.n;
        T* pc = c + bi * d.m * d.n;
        for (int64_t i = 0; i < d.m; ++i) {
          for (int64_t j = 0; j < d.n; ++j) {
            Acc<T> acc = 0;
            for (int64_t p = 0; p < d.k; ++p) {
              const T x = ta ? pa[p * d.m + i] : pa[i * d.k + p];
              const T y = tb ? pb[j * d.k + p] : pb[p * d.n + j];
              acc += static_cast<Acc<T>>(x) * static_cast<Acc<T>>(y);
            }
            pc[i * d.n + j] = static_cast<T>(acc);
          }
        }
      }
    }
  });
}

struct MatmulEntry : onednn::Entry {
  dnnl::matmul prim;
  dnnl::memory a, b, c;
  onednn::ExecArgs args;
  bool bf16 = false;           // mixed_bfloat16: a and b are rounded into a16 and b16 first
  onednn::Bf16Input a16, b16;  // a16.low / b16.low are what `prim` reads
  // Swapped (see transposed_b_swapped): prim writes C^T into `ct`, which `transpose` reorders
  // into c.
  bool swapped = false;
  dnnl::memory ct;
  dnnl::reorder transpose;
  onednn::ExecArgs transpose_args;
};

// C = A B^T with few rows of A and a large B (a dense layer's input gradient, dY W^T) runs as
// C^T = B A^T, with B read in place, into a buffer a reorder then transposes into C: oneDNN's
// brgemm packs a transposed B on every call, which costs more than the product and the
// transpose together. Measured (oneDNN 2.6 alone, 2 threads, Zen 5): [64, 128] x [3136, 128]^T
// 301 -> 214 us, [64, 256] x [784, 256]^T 150 -> 107 us; with B below 1 << 17 elements the
// transpose costs more than it saves ([64, 128] x [256, 128]^T 23 -> 28 us), so those stay.
bool transposed_b_swapped(int rank, bool ta, bool tb, bool bf16, const Dims& d) {
  return rank == 2 && !ta && tb && !bf16 && d.m >= 2 && d.n * d.k >= (int64_t{1} << 17);
}

// oneDNN dims and strides of operand `s` (its batch padded with leading 1s to `rank`), whose
// last two dims are swapped when `t`: the logical [.., rows, cols] over the stored data.
void operand_desc(const Shape& s, int rank, bool t, dnnl::memory::dims& dims,
                  dnnl::memory::dims& strides) {
  dims.assign(rank, 1);
  strides.assign(rank, 1);
  int64_t cs[Shape::kMaxRank];
  contiguous_strides(s, cs);
  const int off = rank - s.rank();
  for (int i = 0; i < s.rank(); ++i) {
    dims[off + i] = s[i];
    strides[off + i] = cs[i];
  }
  for (int i = 0; i < off; ++i) strides[i] = s.numel();
  if (t) {
    std::swap(dims[rank - 1], dims[rank - 2]);
    std::swap(strides[rank - 1], strides[rank - 2]);
  }
}

bool matmul_fast(const KernelArgs& k) {
  if (k.in[0].dtype() != DType::kFloat32) return false;
  const bool ta = k.attrs.i(0), tb = k.attrs.i(1);
  const Shape &as = k.in[0].shape(), &bs = k.in[1].shape(), &os = k.out[0].shape();
  const Dims d = mm_dims(as, bs, ta, tb);
  if (os.numel() == 0) return true;
  if (d.k == 0) return false;  // the reference writes the zeros
  const int rank = os.rank();
  const double flops = 2.0 * static_cast<double>(os.numel()) * static_cast<double>(d.k);
  const int threads = flops < kSingleThreadFlops ? 1 : omp_get_max_threads();
  onednn::ScopedThreads scoped(threads);

  const bool bf16 = detail::mixed_bf16();
  onednn::Key key(onednn::Kind::kMatmul);
  key.add(rank).add(ta).add(tb).add(threads).add(bf16);
  for (int64_t v : as) key.add(v);
  key.add(-1);
  for (int64_t v : bs) key.add(v);
  const bool swapped = transposed_b_swapped(rank, ta, tb, bf16, d);
  auto entry = onednn::get_or_create<MatmulEntry>(key, [&] {
    auto e = std::make_shared<MatmulEntry>();
    if (swapped) {  // src = B [N, K], weights = A^T [K, M] over A's data, dst = C^T [N, M]
      using dt = dnnl::memory::data_type;
      const dnnl::memory::desc bmd({d.n, d.k}, dt::f32, {d.k, 1}),
          amd({d.k, d.m}, dt::f32, {1, d.k}), tmd({d.n, d.m}, dt::f32, {d.m, 1}),
          cmd({d.n, d.m}, dt::f32, {1, d.n});  // C [M, N] row-major, seen as C^T
      e->swapped = true;
      e->prim = dnnl::matmul(
          dnnl::matmul::primitive_desc(dnnl::matmul::desc(bmd, amd, tmd), onednn::engine()));
      e->ct = dnnl::memory(tmd, onednn::engine());
      e->bytes = tmd.get_size();
      e->a = dnnl::memory(amd, onednn::engine(), DNNL_MEMORY_NONE);
      e->b = dnnl::memory(bmd, onednn::engine(), DNNL_MEMORY_NONE);
      e->c = dnnl::memory(cmd, onednn::engine(), DNNL_MEMORY_NONE);
      e->transpose = dnnl::reorder(e->ct, e->c);
      e->transpose_args.add(DNNL_ARG_FROM, e->ct);
      e->transpose_args.add(DNNL_ARG_TO, e->c);
      e->args.add(DNNL_ARG_SRC, e->b);
      e->args.add(DNNL_ARG_WEIGHTS, e->a);
      e->args.add(DNNL_ARG_DST, e->ct);
      return e;
    }
    dnnl::memory::dims ad, ast, bd, bst, cd(os.begin(), os.end()), cst(rank);
    operand_desc(as, rank, ta, ad, ast);
    operand_desc(bs, rank, tb, bd, bst);
    int64_t cs[Shape::kMaxRank];
    contiguous_strides(os, cs);
    cst.assign(cs, cs + rank);
    using dt = dnnl::memory::data_type;
    dnnl::memory::desc amd(ad, dt::f32, ast), bmd(bd, dt::f32, bst), cmd(cd, dt::f32, cst);
    if (bf16) {  // bf16 copies in the stored layouts: the rounding is a plain conversion
      e->bf16 = true;
      e->bytes = e->a16.init(onednn::as_bf16(amd), as.numel()) +
                 e->b16.init(onednn::as_bf16(bmd), bs.numel());
    }
    const dnnl::memory::desc pa = bf16 ? e->a16.low.get_desc() : amd;
    const dnnl::memory::desc pb = bf16 ? e->b16.low.get_desc() : bmd;
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(pa, pb, cmd), onednn::engine());
    e->prim = dnnl::matmul(pd);
    e->a = bf16 ? e->a16.low : dnnl::memory(amd, onednn::engine(), DNNL_MEMORY_NONE);
    e->b = bf16 ? e->b16.low : dnnl::memory(bmd, onednn::engine(), DNNL_MEMORY_NONE);
    e->c = dnnl::memory(cmd, onednn::engine(), DNNL_MEMORY_NONE);
    e->args.add(DNNL_ARG_SRC, e->a);
    e->args.add(DNNL_ARG_WEIGHTS, e->b);
    e->args.add(DNNL_ARG_DST, e->c);
    return e;
  });
  std::lock_guard<std::mutex> lock(entry->mu);
  if (entry->bf16) {
    entry->a16.convert(k.in[0].impl()->bytes());
    entry->b16.convert(k.in[1].impl()->bytes());
  } else {
    entry->a.set_data_handle(k.in[0].impl()->bytes());
    entry->b.set_data_handle(k.in[1].impl()->bytes());
  }
  entry->c.set_data_handle(k.out[0].impl()->bytes());
  onednn::execute(entry->prim, entry->args);
  if (entry->swapped) onednn::execute(entry->transpose, entry->transpose_args);
  return true;
}

// C = op(A) op(B). Each case's gradients are matmuls of g with the other operand, then
// sum_to_like undoes batch broadcasting.
void matmul_grad(const GradArgs& g) {
  const bool ta = g.attrs.i(0), tb = g.attrs.i(1);
  const Tensor &a = g.in[0], &b = g.in[1], &dc = g.grad_out[0];
  Tensor da, db;
  const bool wa = g.needs(0), wb = g.needs(1);  // e.g. a layer's input needs no gradient
  if (!ta && !tb) {                             // C = A B
    if (wa) da = matmul(dc, b, false, true);
    if (wb) db = matmul(a, dc, true, false);
  } else if (ta && !tb) {  // C = A^T B
    if (wa) da = matmul(b, dc, false, true);
    if (wb) db = matmul(a, dc, false, false);
  } else if (!ta && tb) {  // C = A B^T
    if (wa) da = matmul(dc, b, false, false);
    if (wb) db = matmul(dc, a, true, false);
  } else {  // C = A^T B^T
    if (wa) da = matmul(b, dc, true, true);
    if (wb) db = matmul(dc, a, true, true);
  }
  if (g.needs(0)) g.grad_in[0] = ops::sum_to_like(da, a);
  if (g.needs(1)) g.grad_in[1] = ops::sum_to_like(db, b);
}

// 2 * output elements * K, K read from a (transposed when transpose_a).
int64_t matmul_flops(std::span<const Meta> in, const Attrs& a, std::span<const Meta> out) {
  const Shape& s = in[0].shape;
  const int64_t k = s.rank() == 0 ? 1
                    : a.i(0)      ? (s.rank() >= 2 ? s[s.rank() - 2] : 1)
                                  : s[s.rank() - 1];
  return 2 * out[0].shape.numel() * k;
}

constexpr AttrField kMatmulFields[] = {{"transpose_a", AttrType::kBool},
                                       {"transpose_b", AttrType::kBool}};
constexpr AttrSchema kMatmulAttrs{kMatmulFields};

}  // namespace

namespace ops {
const OpDef kMatmul{.name = "matmul",
                    .num_inputs = 2,
                    .num_outputs = 1,
                    .infer = matmul_infer,
                    .reference = matmul_reference,
                    .fast = matmul_fast,
                    .grad = matmul_grad,
                    .attrs = &kMatmulAttrs,
                    .flops = matmul_flops};
}  // namespace ops

Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_a, bool transpose_b) {
  return run_op(ops::kMatmul, {a, b}, Attrs{transpose_a, transpose_b});
}

}  // namespace kiln
