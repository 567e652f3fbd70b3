// The register-tiled micro-kernel of both SB GEMMs (conv at the sampled positions, transposed conv from
// them). Each tile_*.cc includes this header with its own vector width and compiler flags, so the
// instruction set is chosen at run time and no AVX code runs on a machine without it.
#pragma once

namespace sbk {

// One rows x nr output tile: rows read their inputs through offsets (indirection, no im2col copy), and the
// rows are stored (ReLU'd if asked) at c + r * ldc. Inputs and packed weights are 4-byte words: one fp32 value,
// a pair of bf16 (channels k, k + 1) or a quad of u8 activations / s8 weights (channels 4k .. 4k + 3).
// fp32 and bf16 accumulate in fp32 from the bias; int8 accumulates in s32 from `start` (the zero point's
// compensation), then out = fma(acc, scale, bias) and, where given, fma(out, post_scale, post_shift).
struct Tile {
    const void* base;   // the image's input words
    const int* at;      // at[s * rows + r]: the word where row r's kc input words for its s-th tap start
    const void* b;      // packed weight panel: tap k's kc x nr words start at word k * kc * nr
    const int* taps;    // the tap numbers (0..8) the rows gather, ntaps of them
    int ntaps, kc;
    const float* bias;  // nr values
    const int* start;   // int8: nr accumulator starts
    const float* scale;                   // int8: nr (input scale x weight scale)
    const float *post_scale, *post_shift;  // int8: nr each, or null
    void* c;            // fp32; or, for a tile storing its precision's inputs, bf16 / u8 (then q_scale, q_zero)
    const int* c_rows;  // row r is stored at c + c_rows[r] * ldc (c + r * ldc when null), in c's elements
    long ldc;
    bool relu;
    float q_scale;
    int q_zero;
};
using TileFn = void (*)(const Tile&);

// dst[j * ldd + i] = src[i * lds + j] (+ add[j * ldd + i], ReLU'd if asked) for i < rows, j < cols: the
// NCHW <-> NHWC copies, in register blocks.
struct Transpose {
    const float* src;
    long lds;
    float* dst;
    long ldd;
    int rows, cols;
    const float* add;  // or null
    bool relu;
};

using TransposeFn = void (*)(const Transpose&);

// `rows` rows of `cols` fp32 values (stride cols) to bf16 (kind 1) or u8 (kind 2: q = clamp(nearbyint(v / scale)
// + zero, 0, 255)), each dst row `ldd` elements: the channels past `cols` hold 0 (bf16) or the zero point (u8).
struct Convert {
    const float* src;
    long rows;
    int cols;
    void* dst;
    int ldd, kind;
    float scale;
    int zero;
};
using ConvertFn = void (*)(const Convert&);

// A tile shape, up to mr rows: fn[rows] computes that many (1 <= rows <= mr) and stores fp32; fn_q stores the
// precision's own input format (bf16 or u8; fn_q = fn for fp32), for the conv whose output the deconv reads.
struct Shape {
    int mr, nr;
    const TileFn *fn, *fn_q;
};

enum Precision { fp32, bf16, int8 };
constexpr int per_word[3] = {1, 2, 4};  // channels a word holds

// One precision's tiles on one path; `narrow` is for layers with few output channels.
struct Tiles {
    const char* name;
    Shape wide, narrow;
};

struct Isa {
    const char* name;  // the level (SBDEPLOY_KERNEL_ISA's names)
    Tiles tiles[3];    // by Precision
    TransposeFn transpose;
    ConvertFn convert;
};

Isa isa_avx512_bf16();  // native bf16 (vdpbf16ps) and int8
Isa isa_avx512_vnni();  // native int8 (vpdpbusd); bf16 as on avx512
Isa isa_avx512();
Isa isa_avx2();
Isa isa_scalar();
// The native tiles of the two AVX-512 extensions (their own translation units).
Tiles tiles_avx512_bf16();
Tiles tiles_avx512_vnni();

}  // namespace sbk

#ifdef SBK_TILE_V
// No standard headers here: inline library code compiled with AVX flags could be picked by the linker
// for the whole library.
namespace SBK_TILE_NS {

typedef float vec __attribute__((vector_size(SBK_TILE_V * 4)));
typedef int ivec __attribute__((vector_size(SBK_TILE_V * 4)));
typedef unsigned short hvec __attribute__((vector_size(SBK_TILE_V * 2)));
typedef unsigned char bvec __attribute__((vector_size(SBK_TILE_V)));

// a * b + c rounded once on every path (so int8's rescale gives the same numbers with or without FMA).
inline vec fmadd(vec a, vec b, vec c) {
#if SBK_TILE_V == 16
    return __builtin_ia32_vfmaddps512_mask(a, b, c, -1, 4);
#elif SBK_TILE_V == 8 && defined(__FMA__)
    return __builtin_ia32_vfmaddps256(a, b, c);
#else
    for (int i = 0; i < SBK_TILE_V; ++i) a[i] = __builtin_fmaf(a[i], b[i], c[i]);
    return a;
#endif
}

inline vec load(const float* p) {
    vec v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}

// The value, made in a register: a narrowing convert is then stored by a plain move (Zen 4 runs vpmovdb / vpmovdw
// to memory, which the compiler would fuse them into, many times slower).
template <class T>
inline T in_register(T v) {
#ifdef __AVX512F__
    __asm__("" : "+v"(v));
#endif
    return v;
}

// To bf16, round to nearest even (finite values).
inline hvec to_bf16(vec v) {
    ivec u = (ivec)v;  // a vector cast keeps the bits
    u = (u + 0x7fff + ((u >> 16) & 1)) >> 16;
    return in_register(__builtin_convertvector(u, hvec));
}

// clamp(nearbyint(v / scale) + zero, 0, 255): clamped to a whole range first, then rounded half to even by
// adding and subtracting 1.5 * 2^23.
inline bvec to_u8(vec v, float scale, int zero) {
    const float lo = -zero - 1.f, hi = 256.f - zero, magic = 12582912.f;
    vec t = v / scale;
    t = t < lo ? lo : t;
    t = t > hi ? hi : t;
    t = (t + magic) - magic;
    ivec q = __builtin_convertvector(t, ivec) + zero;
    q = q < 0 ? 0 : q;
    q = q > 255 ? 255 : q;
    return in_register(__builtin_convertvector(q, bvec));
}

// The precisions' arithmetic: `word` is an input word, `acc` the accumulator; madd adds one word's products.
struct F32 {
    static constexpr int kind = sbk::fp32;
    using word = float;
    using wvec = vec;
    using acc = vec;
    static acc madd(acc c, wvec b, float a) { return c + b * a; }
};

// bf16 pairs through fp32 FMAs: the high element first, as vdpbf16ps does; each product is exact in fp32, so
// this is the same sum.
struct BF16 {
    static constexpr int kind = sbk::bf16;
    using word = unsigned;
    using wvec = ivec;
    using acc = vec;
    static acc madd(acc c, wvec b, unsigned a) {
        const ivec hi = b & int(0xffff0000u), lo = b << 16;
        const unsigned ah = a & 0xffff0000u, al = a << 16;
        c += (vec)hi * __builtin_bit_cast(float, ah);
        return c + (vec)lo * __builtin_bit_cast(float, al);
    }
};

// u8 x s8 quads in exact s32 arithmetic (what vpdpbusd computes, without it).
struct I8 {
    static constexpr int kind = sbk::int8;
    using word = unsigned;
    using wvec = ivec;
    using acc = ivec;
    static acc madd(acc c, wvec b, unsigned a) {
        const int a0 = a & 255, a1 = (a >> 8) & 255, a2 = (a >> 16) & 255, a3 = a >> 24;
        return c + ((b << 24) >> 24) * a0 + ((b << 16) >> 24) * a1 + ((b << 8) >> 24) * a2 + (b >> 24) * a3;
    }
};

template <class P, bool Q, int MR, int NV>
void tile(const sbk::Tile& t) {
    constexpr int V = SBK_TILE_V, NR = NV * V;
    constexpr bool integer = P::kind == sbk::int8;
    using word = typename P::word;
    using wvec = typename P::wvec;
    typename P::acc acc[MR][NV], start[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j)
        __builtin_memcpy(&start[j], integer ? static_cast<const void*>(t.start + j * V) : t.bias + j * V, sizeof(vec));
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) acc[r][j] = start[j];
    const word* base = static_cast<const word*>(t.base);
    for (int s = 0; s < t.ntaps; ++s) {
        const word* bp = static_cast<const word*>(t.b) + static_cast<long>(t.taps[s]) * t.kc * NR;
        const word* ap[MR];
#pragma GCC unroll 32
        for (int r = 0; r < MR; ++r) ap[r] = base + t.at[s * MR + r];
        for (int k = 0; k < t.kc; ++k) {
            wvec bv[NV];
#pragma GCC unroll 4
            for (int j = 0; j < NV; ++j) __builtin_memcpy(&bv[j], bp + k * NR + j * V, sizeof(wvec));
#pragma GCC unroll 32
            for (int r = 0; r < MR; ++r) {
                const word a = ap[r][k];
#pragma GCC unroll 4
                for (int j = 0; j < NV; ++j) acc[r][j] = P::madd(acc[r][j], bv[j], a);
            }
        }
    }
    const vec zero{};
    const float q_scale = t.q_scale;  // locals: the stores below cannot change them
    const int q_zero = t.q_zero;
    const bool relu = t.relu;
    vec scale[NV], bias[NV], post_scale[NV], post_shift[NV];
    if constexpr (integer)
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) {
            scale[j] = load(t.scale + j * V);
            bias[j] = load(t.bias + j * V);
            post_scale[j] = t.post_scale ? load(t.post_scale + j * V) : vec{} + 1.f;
            post_shift[j] = t.post_scale ? load(t.post_shift + j * V) : vec{};
        }
    const bool post = t.post_scale;
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r) {
        const long row = (t.c_rows ? t.c_rows[r] : r) * t.ldc;
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) {
            vec v;
            if constexpr (integer) {
                v = fmadd(__builtin_convertvector(acc[r][j], vec), scale[j], bias[j]);
                if (post) v = fmadd(v, post_scale[j], post_shift[j]);
            } else {
                v = acc[r][j];
            }
            if (relu) v = v > zero ? v : zero;
            if constexpr (!Q) {
                __builtin_memcpy(static_cast<float*>(t.c) + row + j * V, &v, sizeof v);
            } else if constexpr (integer) {
                const bvec q = to_u8(v, q_scale, q_zero);
                __builtin_memcpy(static_cast<unsigned char*>(t.c) + row + j * V, &q, sizeof q);
            } else {
                const hvec h = to_bf16(v);
                __builtin_memcpy(static_cast<unsigned short*>(t.c) + row + j * V, &h, sizeof h);
            }
        }
    }
}

template <int Kind>
void convert_rows(const sbk::Convert& c) {
    constexpr int V = SBK_TILE_V;
    const float scale = c.scale;  // locals: the stores below cannot change them
    const int zero = c.zero;
    const auto convert_vec = [scale, zero](vec v) {
        if constexpr (Kind == sbk::bf16)
            return to_bf16(v);
        else
            return to_u8(v, scale, zero);
    };
    using out = decltype(convert_vec(vec{}));
    constexpr int size = sizeof(out) / V;
    if (c.rows <= 0) return;
    // Rows without padding are one long row.
    const long rows = c.cols == c.ldd ? 1 : c.rows, cols = c.cols * (c.rows / rows), ldd = c.ldd * (c.rows / rows);
    const long whole = cols / V * V;  // whole vectors of a row (dst rows are as long or longer)
    for (long i = 0; i < rows; ++i) {
        const float* src = c.src + i * cols;
        char* dst = static_cast<char*>(c.dst) + i * ldd * size;
        for (long j = 0; j < whole; j += V) {
            const out o = convert_vec(load(src + j));
            __builtin_memcpy(dst + j * size, &o, sizeof o);
        }
        for (long j = whole; j < ldd; j += V) {  // the row's end and its padding: 0 past the source
            vec v{};
            for (long e = 0; e < V && j + e < cols; ++e) v[e] = src[j + e];
            const out o = convert_vec(v);
            for (long e = 0; e < V && j + e < ldd; ++e) __builtin_memcpy(dst + (j + e) * size, &o[e], size);
        }
    }
}

void convert(const sbk::Convert& c) {
    if (c.kind == sbk::bf16)
        convert_rows<sbk::bf16>(c);
    else
        convert_rows<sbk::int8>(c);
}

template <int... L>
struct seq {};
template <int N, int... L>
struct make_seq : make_seq<N - 1, N - 1, L...> {};
template <int... L>
struct make_seq<0, L...> {
    using type = seq<L...>;
};

// One butterfly stage of a V x V register transpose: rows i and i + B swap their off-diagonal B-blocks.
template <int B, int... L>
void swap_blocks(vec* r, seq<L...>) {
    constexpr int V = SBK_TILE_V;
    constexpr ivec lo{(L % (2 * B) < B ? L : V + L - B)...}, hi{(L % (2 * B) < B ? L + B : V + L)...};
#pragma GCC unroll 16
    for (int i = 0; i < V; ++i)
        if (i / B % 2 == 0) {
            const vec a = r[i], b = r[i + B];
            r[i] = __builtin_shuffle(a, b, lo);
            r[i + B] = __builtin_shuffle(a, b, hi);
        }
    if constexpr (B > 1) swap_blocks<B / 2>(r, seq<L...>{});
}

inline float finish(float v, const float* add, long at, bool relu) {
    if (add) v += add[at];
    return relu && v < 0.f ? 0.f : v;
}

void transpose(const sbk::Transpose& t) {
    constexpr int V = SBK_TILE_V;
    const vec zero{};
    for (int i0 = 0; i0 < t.rows; i0 += V)
        for (int j0 = 0; j0 < t.cols; j0 += V) {
            if (i0 + V > t.rows || j0 + V > t.cols) {  // an edge block, element by element
                for (int j = j0; j < j0 + V && j < t.cols; ++j)
                    for (int i = i0; i < i0 + V && i < t.rows; ++i)
                        t.dst[j * t.ldd + i] = finish(t.src[i * t.lds + j], t.add, j * t.ldd + i, t.relu);
                continue;
            }
            vec r[V];
#pragma GCC unroll 16
            for (int i = 0; i < V; ++i) __builtin_memcpy(&r[i], t.src + (i0 + i) * t.lds + j0, sizeof(vec));
            swap_blocks<V / 2>(r, typename make_seq<V>::type{});
#pragma GCC unroll 16
            for (int j = 0; j < V; ++j) {
                const long at = (j0 + j) * t.ldd + i0;
                if (t.add) {
                    vec a;
                    __builtin_memcpy(&a, t.add + at, sizeof a);
                    r[j] += a;
                }
                if (t.relu) r[j] = r[j] > zero ? r[j] : zero;
                __builtin_memcpy(t.dst + at, &r[j], sizeof(vec));
            }
        }
}

// fn[rows]: the tile of that many rows, 1..MR (fn[0] is null).
template <class P, bool Q, int NV, class Rows>
struct TileTable;
template <class P, bool Q, int NV, int... R>
struct TileTable<P, Q, NV, seq<R...>> {
    static constexpr sbk::TileFn fn[] = {nullptr, tile<P, Q, R + 1, NV>...};
};

template <class P, int MR, int NV>
sbk::Shape shape() {
    using rows = typename make_seq<MR>::type;
    if constexpr (P::kind == sbk::fp32)
        return {MR, NV * SBK_TILE_V, TileTable<P, false, NV, rows>::fn, TileTable<P, false, NV, rows>::fn};
    else
        return {MR, NV * SBK_TILE_V, TileTable<P, false, NV, rows>::fn, TileTable<P, true, NV, rows>::fn};
}

}  // namespace SBK_TILE_NS
#endif
