// The fast kernels of fused_conv2d_pool and fused_conv2d_pool_grad (ops/conv_pool.cc has the
// ops, their references and gradients): direct kernels for float32 convs of at most
// kMaxDirectTaps taps, one image at a time in per-thread buffers that stay in cache.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/tensor_impl.h"
#include "kernels/broadcast.h"
#include "kernels/vector_clones.h"
#include "ops/conv_pool.h"

namespace kiln::conv_pool {
namespace {

constexpr int64_t kLanes = 16;          // channels per accumulator block (one zmm of floats)
constexpr int64_t kImagesPerBlock = 4;  // the gradient's partial sums: fixed, so results do not
                                        // depend on the thread count

// Both passes read an image through its columns: each output row is cut in groups of 8
// pixels (the last one padded), and cols[g][tp][8] holds, for pixel p of group g, the image
// value under each tap t = (ky, kx, ci) (the filter's row order) at ((g * tp + t) * 8 + p); tp
// is the tap count rounded up to kTapBlock, and padding taps and pixels are zero. With the 8 pixels
// of a tap side by side, every operand of the inner loops sits at a fixed displacement from one
// pointer, and 8 or 16 (forward) or 9 (gradient) independent accumulators hide the multiply-add
// latency.

// kLanes floats as one GCC vector: one zmm with AVX-512, two ymm with AVX2 (GCC's SLP pass
// leaves the same loop over a float[16] as 16 scalar multiply-adds). The loops over them are
// KILN_VECTOR_CLONES, so a portable build runs them with AVX-512 or AVX2 where the CPU has it.
using Lanes = float __attribute__((vector_size(kLanes * sizeof(float))));
// Below AVX-512, GCC notes that passing a 64-byte vector changes the ABI: these functions are
// local to this file, so no caller outside it can disagree.
#pragma GCC diagnostic ignored "-Wpsabi"
inline Lanes load(const float* p) {
  Lanes v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, Lanes v) { std::memcpy(p, &v, sizeof v); }
// The same lanes as int32 and uint8 (window slots). GCC converts between float and uint8
// vectors one element at a time; through Ints it uses vector conversions.
using Ints = int32_t __attribute__((vector_size(kLanes * sizeof(int32_t))));
using Bytes = uint8_t __attribute__((vector_size(kLanes)));

// kLanes window slots (uint8) as floats. GCC 12 widens a Bytes vector through scalar byte
// extracts; where the build targets AVX-512 or AVX2, one zero-extending move per register.
inline Lanes load_slots(const uint8_t* p) {
#if defined(__AVX512F__)
  // The maskz forms: the plain ones start from an undefined register, which GCC 12 reports as
  // maybe uninitialized once inlined.
  const __mmask16 all = 0xFFFF;
  return (Lanes)_mm512_maskz_cvtepi32_ps(
      all, _mm512_maskz_cvtepu8_epi32(all, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
#elif defined(__AVX2__)
  const __m256 lo = _mm256_cvtepi32_ps(
      _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  const __m256 hi = _mm256_cvtepi32_ps(
      _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 8))));
  Lanes v;
  std::memcpy(&v, &lo, sizeof lo);
  std::memcpy(reinterpret_cast<char*>(&v) + sizeof lo, &hi, sizeof hi);
  return v;
#else
  Bytes sb;
  std::memcpy(&sb, p, sizeof sb);
  return __builtin_convertvector(__builtin_convertvector(sb, Ints), Lanes);
#endif
}

constexpr int64_t kTapBlock = 9;    // a 3x3 filter's taps (one input channel)
constexpr int64_t kPixelBlock = 8;  // output pixels per column group

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// Buffers that keep their capacity from call to call, one set per thread (OpenMP's threads
// persist), so a warm plan's steps allocate nothing (tests/graph/alloc_free_test.cc). The
// calling thread's `call` set holds what the parallel region shares; each thread's `work` set
// what it uses alone.
struct Scratch {
  std::vector<float> w, b, part;      // call
  std::vector<float> image, z, cols;  // work
  std::vector<int64_t> tap;           // work
};
Scratch& scratch() {
  thread_local Scratch s;
  return s;
}
template <typename T>
T* grow(std::vector<T>& v, int64_t n) {
  if (v.size() < static_cast<size_t>(n)) v.resize(static_cast<size_t>(n));
  return v.data();
}

// The sizes every fast kernel works with.
struct Dims {
  int64_t taps, tp, cp, pixels, row_groups, groups;  // cp: output channels rounded up to kLanes
  int64_t ow;
  explicit Dims(const conv::Geom& g)
      : taps(g.kh * g.kw * g.c),
        tp(round_up(taps, kTapBlock)),
        cp(round_up(g.o, kLanes)),
        pixels(g.oh * g.ow),
        row_groups((g.ow + kPixelBlock - 1) / kPixelBlock),
        groups(g.oh * row_groups),
        ow(g.ow) {}
  // Group grp's first pixel (row-major over the conv output) and its pixel count.
  int64_t first(int64_t grp) const {
    return grp / row_groups * ow + grp % row_groups * kPixelBlock;
  }
  int64_t valid(int64_t grp) const {
    return std::min(kPixelBlock, ow - grp % row_groups * kPixelBlock);
  }
};

// One image with the conv's zero padding around it (pixel (y, x) at ((y + pt) * wp + x + pl) *
// c), so no tap needs a bounds check, and its columns.
class ImageColumns {
 public:
  ImageColumns(const conv::Geom& g, const Dims& d, Scratch& s) : g_(g), d_(d) {
    wp_ = g.w + g.pl + g.pr;
    const int64_t size = (g.h + g.pt + g.pb) * wp_ * g.c;
    image_ = grow(s.image, size);
    std::fill(image_, image_ + size, 0.f);  // the borders stay zero
    tap_ = grow(s.tap, d.taps);
    int64_t t = 0;
    for (int64_t ky = 0; ky < g.kh; ++ky)
      for (int64_t kx = 0; kx < g.kw; ++kx)
        for (int64_t ci = 0; ci < g.c; ++ci) tap_[t++] = (ky * g.dh * wp_ + kx * g.dw) * g.c + ci;
    const int64_t n = d.groups * d.tp * kPixelBlock;
    cols_ = grow(s.cols, n);
    std::fill(cols_, cols_ + n, 0.f);  // padding taps and pixels stay zero
  }
  // Loads image x [h][w][c] and fills the columns.
  const float* columns(const float* x) {
    const conv::Geom& g = g_;
    for (int64_t y = 0; y < g.h; ++y)
      std::copy(x + y * g.w * g.c, x + (y + 1) * g.w * g.c,
                image_ + ((y + g.pt) * wp_ + g.pl) * g.c);
    // Group by group, tap by tap: a group's pixels under one tap are one run of an image row
    // (contiguous when step is 1), and a group's columns are one contiguous block. (A pixel by
    // pixel loop over taps, storing floats 32 bytes apart, ran slower than the convolution.)
    const int64_t step = g.sw * g.c;
    for (int64_t oy = 0, grp = 0; oy < g.oh; ++oy)
      for (int64_t gx = 0; gx < d_.row_groups; ++gx, ++grp) {
        const float* base = image_ + (oy * g.sh * wp_ + gx * kPixelBlock * g.sw) * g.c;
        float* dst = cols_ + grp * d_.tp * kPixelBlock;
        const int64_t n = d_.valid(grp);
        for (int64_t t = 0; t < d_.taps; ++t, dst += kPixelBlock) {
          const float* src = base + tap_[t];
          if (step == 1 && n == kPixelBlock) {
            std::memcpy(dst, src, sizeof(float) * kPixelBlock);  // inlined: one 32-byte move
          } else {
            for (int64_t p = 0; p < n; ++p) dst[p] = src[p * step];
          }
        }
      }
    return cols_;
  }

 private:
  const conv::Geom& g_;
  const Dims& d_;
  int64_t wp_;
  float *image_, *cols_;
  int64_t* tap_;
};

// The filter [taps][C] as blocks [tp / kTapBlock][cp / kLanes][kTapBlock][kLanes], zeros past
// the filter's taps and channels: the kTapBlock weight vectors one forward block reads, side by
// side.
const float* blocked_filter(std::vector<float>& buf, const float* f, const conv::Geom& g,
                            const Dims& d) {
  const int64_t nb = d.cp / kLanes, size = d.tp * d.cp;
  float* out = grow(buf, size);
  std::fill(out, out + size, 0.f);
  for (int64_t t = 0; t < d.taps; ++t)
    for (int64_t c = 0; c < g.o; ++c) {
      const int64_t tb = t / kTapBlock, u = t % kTapBlock, cb = c / kLanes;
      out[((tb * nb + cb) * kTapBlock + u) * kLanes + c % kLanes] = f[t * g.o + c];
    }
  return out;
}

// z[px][cp] = relu(conv + b) for one image's columns: per group of 8 pixels and channel block,
// 8 accumulators, each weight vector loaded once for the 8.
KILN_VECTOR_CLONES void conv_relu_image(const Dims& d, const float* cols, const float* w,
                                        const float* b, float* z) {
  const int64_t nb = d.cp / kLanes;
  const Lanes zero = {};
  for (int64_t grp = 0; grp < d.groups; ++grp)
    for (int64_t cb = 0; cb < nb; ++cb) {
      Lanes a[kPixelBlock];
      for (int64_t p = 0; p < kPixelBlock; ++p) a[p] = load(b + cb * kLanes);
      for (int64_t tb = 0; tb < d.tp / kTapBlock; ++tb) {
        const float* wb = w + (tb * nb + cb) * kTapBlock * kLanes;
        const float* xb = cols + (grp * d.tp + tb * kTapBlock) * kPixelBlock;
#pragma GCC unroll 9
        for (int64_t u = 0; u < kTapBlock; ++u) {
          const Lanes wv = load(wb + u * kLanes);
#pragma GCC unroll 8
          for (int64_t p = 0; p < kPixelBlock; ++p) a[p] += xb[u * kPixelBlock + p] * wv;
        }
      }
      float* zg = z + d.first(grp) * d.cp + cb * kLanes;
      for (int64_t p = 0, n = d.valid(grp); p < n; ++p)
        store(zg + p * d.cp, a[p] > zero ? a[p] : zero);
    }
}

// Pools one image's z [h][w][cp] into y, slot [oh][ow][C]: the first max (strict >) of each
// window, as max_pool2d and argmax_ref choose it. Blends, not branches: which pixel wins is
// data, and a branch on it mispredicts half the time.
KILN_VECTOR_CLONES void pool_image(const pool::Geom& g, const float* z, int64_t cp, float* y,
                                   uint8_t* slot) {
  const int64_t C = g.c;
  for (int64_t oy = 0; oy < g.oh; ++oy)
    for (int64_t ox = 0; ox < g.ow; ++ox) {
      const pool::Window wd = pool::window(g, oy, ox);
      const int64_t o = (oy * g.ow + ox) * C;
      for (int64_t cb = 0; cb < cp; cb += kLanes) {
        Lanes m = load(z + (wd.y0 * g.w + wd.x0) * cp + cb), s = {};
        float pos = 0.f;
        for (int64_t yy = wd.y0; yy < wd.y1; ++yy)
          for (int64_t xx = wd.x0; xx < wd.x1; ++xx, pos += 1.f) {
            const Lanes v = load(z + (yy * g.w + xx) * cp + cb);
            const auto gt = v > m;
            m = gt ? v : m;
            s = gt ? Lanes{} + pos : s;
          }
        const Bytes sb = __builtin_convertvector(__builtin_convertvector(s, Ints), Bytes);
        if (cb + kLanes <= C) {
          store(y + o + cb, m);
          std::memcpy(slot + o + cb, &sb, sizeof sb);
        } else {  // the last, partial block: y and slot rows are C long
          for (int64_t c = cb; c < C; ++c) y[o + c] = m[c - cb], slot[o + c] = sb[c - cb];
        }
      }
    }
}

// 2x2 windows at stride 2 that tile the conv output exactly (the usual pool after a conv).
bool tiles_2x2(const pool::Geom& g) { return g.ph == 2 && g.pw == 2 && pool::windows_tile(g); }

// Pixels of each of the two conv rows conv_relu_pool_tiled computes at once: 8 (16
// accumulators) where the build has AVX-512's 32 vector registers, else 4 (8 accumulators, 16
// ymm with AVX2).
#if defined(__AVX512F__)
constexpr int64_t kConvRowPixels = 8;
#else
constexpr int64_t kConvRowPixels = 4;
#endif

// One window's pooled value and slot from its four relu'd pixels in row-major order: the first
// max (strict >), as pool_image chooses it.
inline void pool4(Lanes v0, Lanes v1, Lanes v2, Lanes v3, Lanes& m, Lanes& s) {
  const Lanes zero = {};
  m = v0, s = zero;
  auto gt = v1 > m;
  m = gt ? v1 : m, s = gt ? zero + 1.f : s;
  gt = v2 > m;
  m = gt ? v2 : m, s = gt ? zero + 2.f : s;
  gt = v3 > m;
  m = gt ? v3 : m, s = gt ? zero + 3.f : s;
}

// y, slot [oh][ow][C] of one image for tiles_2x2 pools: the conv rows of each window row are
// computed together (4 pixels of each, 8 accumulators) and pooled in registers, so the conv
// output is never stored. Each output sums in conv_relu_image's order: the same bits.
KILN_VECTOR_CLONES void conv_relu_pool_tiled(const Dims& d, const pool::Geom& g, const float* cols,
                                             const float* w, const float* b, float* y,
                                             uint8_t* slot) {
  constexpr int64_t kHalf = kConvRowPixels;
  const int64_t nb = d.cp / kLanes, C = g.c;
  const Lanes zero = {};
  for (int64_t py = 0; py < g.oh; ++py)
    for (int64_t gx = 0; gx < d.row_groups; ++gx) {
      const int64_t g0 = 2 * py * d.row_groups + gx, g1 = g0 + d.row_groups;
      const int64_t n = d.valid(g0);  // even: the conv output's width is
      for (int64_t cb = 0; cb < nb; ++cb)
        for (int64_t h = 0; h < n; h += kHalf) {
          Lanes a0[kHalf], a1[kHalf];
          for (int64_t p = 0; p < kHalf; ++p) a0[p] = a1[p] = load(b + cb * kLanes);
          for (int64_t tb = 0; tb < d.tp / kTapBlock; ++tb) {
            const float* wb = w + (tb * nb + cb) * kTapBlock * kLanes;
            const float* x0 = cols + (g0 * d.tp + tb * kTapBlock) * kPixelBlock + h;
            const float* x1 = cols + (g1 * d.tp + tb * kTapBlock) * kPixelBlock + h;
#pragma GCC unroll 9
            for (int64_t u = 0; u < kTapBlock; ++u) {
              const Lanes wv = load(wb + u * kLanes);
#pragma GCC unroll 8
              for (int64_t p = 0; p < kHalf; ++p) {
                a0[p] += x0[u * kPixelBlock + p] * wv;
                a1[p] += x1[u * kPixelBlock + p] * wv;
              }
            }
          }
#pragma GCC unroll 4
          for (int64_t q = 0; q < kHalf / 2; ++q) {  // constant trips: a0, a1 stay in registers
            if (h + 2 * q >= n) break;
            Lanes m, s;
            const Lanes v0 = a0[2 * q], v1 = a0[2 * q + 1], v2 = a1[2 * q], v3 = a1[2 * q + 1];
            pool4(v0 > zero ? v0 : zero, v1 > zero ? v1 : zero, v2 > zero ? v2 : zero,
                  v3 > zero ? v3 : zero, m, s);
            const Bytes sb = __builtin_convertvector(__builtin_convertvector(s, Ints), Bytes);
            const int64_t o = (py * g.ow + (gx * kPixelBlock + h) / 2 + q) * C + cb * kLanes;
            if ((cb + 1) * kLanes <= C) {
              store(y + o, m);
              std::memcpy(slot + o, &sb, sizeof sb);
            } else {  // the last, partial block: y and slot rows are C long
              for (int64_t c = 0; c < C - cb * kLanes; ++c) y[o + c] = m[c], slot[o + c] = sb[c];
            }
          }
        }
    }
}

}  // namespace

bool forward_fast(const KernelArgs& k) {
  const char* op = "fused_conv2d_pool";
  const conv::Geom cg = conv::geom(op, "", k.in[0].shape(), k.in[1].shape(), conv::prefix(k.attrs));
  if (!direct(k.in[0].dtype(), cg)) return false;
  const pool::Geom pg = pool_geom(op, cg, k.attrs);
  const Dims d(cg);
  Scratch& call = scratch();
  const float* w = blocked_filter(call.w, detail::ptr<float>(k.in[1]), cg, d);
  float* b = grow(call.b, d.cp);
  std::fill(b, b + d.cp, 0.f);
  std::copy(detail::ptr<float>(k.in[2]), detail::ptr<float>(k.in[2]) + cg.o, b);
  const float* x = detail::ptr<float>(k.in[0]);
  float* y = detail::ptr<float>(k.out[0]);
  uint8_t* slot = detail::ptr<uint8_t>(k.out[1]);
  const int64_t x_img = cg.h * cg.w * cg.c, y_img = pg.oh * pg.ow * cg.o;
  const bool tiled = tiles_2x2(pg);
  kernels::parallel_range(cg.n, d.pixels * d.cp * d.taps, [&](int64_t begin, int64_t end) {
    Scratch& work = scratch();
    ImageColumns im(cg, d, work);
    float* z = tiled ? nullptr : grow(work.z, d.pixels * d.cp);
    for (int64_t n = begin; n < end; ++n) {
      if (tiled) {
        conv_relu_pool_tiled(d, pg, im.columns(x + n * x_img), w, b, y + n * y_img,
                             slot + n * y_img);
        continue;
      }
      conv_relu_image(d, im.columns(x + n * x_img), w, b, z);
      pool_image(pg, z, d.cp, y + n * y_img, slot + n * y_img);
    }
  });
  return true;
}

namespace {

// dz [h][w][cp] of one image: each output's gradient on its slot where y > 0, zero elsewhere.
// Whole channel blocks as vectors when C is a multiple of kLanes (the rows of y, dy and slot
// are C long: a partial block would read past them), element by element otherwise.
KILN_VECTOR_CLONES void scatter_image(const pool::Geom& g, const uint8_t* slot, const float* y,
                                      const float* dy, int64_t cp, float* dz) {
  const int64_t C = g.c;
  const bool whole = C % kLanes == 0;
  const bool tiles = whole && pool::windows_tile(g);  // every dz element stored once: no fill
  if (!tiles) std::fill(dz, dz + g.h * g.w * cp, 0.f);
  for (int64_t oy = 0; oy < g.oh; ++oy)
    for (int64_t ox = 0; ox < g.ow; ++ox) {
      const pool::Window wd = pool::window(g, oy, ox);
      const int64_t o = (oy * g.ow + ox) * C;
      if (whole) {
        for (int64_t cb = 0; cb < C; cb += kLanes) {
          const Lanes yv = load(y + o + cb), zero = {};
          const Lanes dv = yv > zero ? load(dy + o + cb) : zero;
          const Lanes s = load_slots(slot + o + cb);
          float pos = 0.f;
          for (int64_t yy = wd.y0; yy < wd.y1; ++yy)
            for (int64_t xx = wd.x0; xx < wd.x1; ++xx, pos += 1.f) {
              float* zp = dz + (yy * g.w + xx) * cp + cb;
              store(zp, (tiles ? zero : load(zp)) + (s == pos ? dv : zero));
            }
        }
        continue;
      }
      int32_t pos = 0;
      for (int64_t yy = wd.y0; yy < wd.y1; ++yy)
        for (int64_t xx = wd.x0; xx < wd.x1; ++xx, ++pos) {
          float* zp = dz + (yy * g.w + xx) * cp;
          for (int64_t c = 0; c < C; ++c)
            zp[c] += slot[o + c] == pos && y[o + c] > 0.f ? dy[o + c] : 0.f;
        }
    }
}

// scatter_image for tiles_2x2 pools with C a multiple of kLanes: each window's four pixels
// written once, the position compares unrolled.
KILN_VECTOR_CLONES void scatter_tiled(const pool::Geom& g, const uint8_t* slot, const float* y,
                                      const float* dy, int64_t cp, float* dz) {
  const int64_t C = g.c;
  const Lanes zero = {};
  for (int64_t oy = 0; oy < g.oh; ++oy)
    for (int64_t ox = 0; ox < g.ow; ++ox) {
      const int64_t o = (oy * g.ow + ox) * C;
      float* z0 = dz + (2 * oy * g.w + 2 * ox) * cp;
      float* z1 = z0 + g.w * cp;
      for (int64_t cb = 0; cb < C; cb += kLanes) {
        const Lanes yv = load(y + o + cb);
        const Lanes dv = yv > zero ? load(dy + o + cb) : zero;
        const Lanes s = load_slots(slot + o + cb);
        store(z0 + cb, s == 0.f ? dv : zero);
        store(z0 + cp + cb, s == 1.f ? dv : zero);
        store(z1 + cb, s == 2.f ? dv : zero);
        store(z1 + cp + cb, s == 3.f ? dv : zero);
      }
    }
}

// acc[taps][cp] += the filter gradient of one image (its columns, its gradient dz [px][cp]);
// acc[taps] (one more row) += dz's sum. kTapBlock taps at a
// time, each with its own accumulator, over the 8 pixels of every group.
KILN_VECTOR_CLONES void filter_grad_image(const Dims& d, const float* cols, const float* dz,
                                          float* acc) {
  for (int64_t cb = 0; cb < d.cp; cb += kLanes) {
    Lanes sum = {};  // summed with the first block's taps: one more independent chain
    for (int64_t t0 = 0; t0 < d.tp; t0 += kTapBlock) {
      Lanes a[kTapBlock] = {};
      for (int64_t grp = 0; grp < d.groups; ++grp) {
        const float* xb = cols + (grp * d.tp + t0) * kPixelBlock;
        const float* dzg = dz + d.first(grp) * d.cp + cb;
        for (int64_t p = 0, n = d.valid(grp); p < n; ++p) {
          const Lanes gv = load(dzg + p * d.cp);
#pragma GCC unroll 9
          for (int64_t u = 0; u < kTapBlock; ++u) a[u] += xb[u * kPixelBlock + p] * gv;
          if (t0 == 0) sum += gv;
        }
      }
      for (int64_t u = 0; u < kTapBlock && t0 + u < d.taps; ++u) {
        float* ap = acc + (t0 + u) * d.cp + cb;
        store(ap, load(ap) + a[u]);
      }
    }
    store(acc + d.taps * d.cp + cb, load(acc + d.taps * d.cp + cb) + sum);
  }
}

}  // namespace

bool grad_fast(const KernelArgs& k) {
  const char* op = "fused_conv2d_pool_grad";
  const conv::Geom cg =
      conv::geom(op, "", k.in[0].shape(), k.out[0].shape(), conv::prefix(k.attrs));
  if (!direct(k.in[0].dtype(), cg)) return false;
  const pool::Geom pg = pool_geom(op, cg, k.attrs);
  const Dims d(cg);
  const int64_t rows = d.taps + 1;
  const int64_t blocks = (cg.n + kImagesPerBlock - 1) / kImagesPerBlock;
  float* part = grow(scratch().part, blocks * rows * d.cp);
  std::fill(part, part + blocks * rows * d.cp, 0.f);
  const float* x = detail::ptr<float>(k.in[0]);
  const uint8_t* slot = detail::ptr<uint8_t>(k.in[1]);
  const float *y = detail::ptr<float>(k.in[2]), *dy = detail::ptr<float>(k.in[3]);
  const int64_t x_img = cg.h * cg.w * cg.c, y_img = pg.oh * pg.ow * cg.o;
  const bool tiled = tiles_2x2(pg) && cg.o % kLanes == 0;
  kernels::parallel_range(
      blocks, kImagesPerBlock * d.pixels * d.cp * d.taps, [&](int64_t begin, int64_t end) {
        Scratch& work = scratch();
        ImageColumns im(cg, d, work);
        float* dz = grow(work.z, d.pixels * d.cp);
        for (int64_t blk = begin; blk < end; ++blk) {
          float* acc = part + blk * rows * d.cp;
          for (int64_t n = blk * kImagesPerBlock; n < std::min(cg.n, (blk + 1) * kImagesPerBlock);
               ++n) {
            if (tiled) {
              scatter_tiled(pg, slot + n * y_img, y + n * y_img, dy + n * y_img, d.cp, dz);
            } else {
              scatter_image(pg, slot + n * y_img, y + n * y_img, dy + n * y_img, d.cp, dz);
            }
            filter_grad_image(d, im.columns(x + n * x_img), dz, acc);
          }
        }
      });
  // Blocks summed in order: the same bits on any number of threads.
  float* df = detail::ptr<float>(k.out[0]);
  float* db = detail::ptr<float>(k.out[1]);
  std::fill(df, df + d.taps * cg.o, 0.f);
  std::fill(db, db + cg.o, 0.f);
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const float* acc = part + blk * rows * d.cp;
    for (int64_t t = 0; t < d.taps; ++t)
      for (int64_t c = 0; c < cg.o; ++c) df[t * cg.o + c] += acc[t * d.cp + c];
    for (int64_t c = 0; c < cg.o; ++c) db[c] += acc[d.taps * d.cp + c];
  }
  return true;
}

}  // namespace kiln::conv_pool
