// The register-tiled micro-kernel of both SB GEMMs (conv at the sampled positions, transposed conv from
// them). Each tile_*.cc includes this header with its own vector width and compiler flags, so the
// instruction set is chosen at run time and no AVX code runs on a machine without it.
#pragma once

namespace sbk {

// One rows x nr output tile: rows read their inputs through offsets (indirection, no im2col copy), the
// accumulators start from the bias, and the rows are stored (ReLU'd if asked) at c + r * ldc.
struct Tile {
    const float* base;  // the image's inputs
    const int* at;      // at[s * rows + r]: where row r's kc inputs for its s-th tap start (a zero row at borders)
    const float* b;     // packed weight panel: tap k's kc x nr block starts at b + k * kc * nr
    const int* taps;    // the tap numbers (0..8) the rows gather, ntaps of them
    int ntaps, kc;
    const float* bias;  // nr values
    float* c;
    const int* c_rows;  // row r is stored at c + c_rows[r] * ldc (c + r * ldc when null)
    long ldc;
    bool relu;
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

// A tile shape, up to mr rows: fn[rows] computes that many (1 <= rows <= mr); `narrow` is for layers with few
// output channels.
struct Shape {
    int mr, nr;
    const TileFn* fn;
};

struct Isa {
    const char* name;
    Shape wide, narrow;
    TransposeFn transpose;
};

Isa isa_avx512();
Isa isa_avx2();
Isa isa_scalar();

}  // namespace sbk

#ifdef SBK_TILE_V
// No standard headers here: inline library code compiled with AVX flags could be picked by the linker
// for the whole library.
namespace SBK_TILE_NS {

typedef float vec __attribute__((vector_size(SBK_TILE_V * 4)));

template <int MR, int NV>
void tile(const sbk::Tile& t) {
    constexpr int NR = NV * SBK_TILE_V;
    vec acc[MR][NV], bias[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) __builtin_memcpy(&bias[j], t.bias + j * SBK_TILE_V, sizeof(vec));
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) acc[r][j] = bias[j];
    for (int s = 0; s < t.ntaps; ++s) {
        const float* bp = t.b + static_cast<long>(t.taps[s]) * t.kc * NR;
        const float* ap[MR];
#pragma GCC unroll 32
        for (int r = 0; r < MR; ++r) ap[r] = t.base + t.at[s * MR + r];
        for (int k = 0; k < t.kc; ++k) {
            vec bv[NV];
#pragma GCC unroll 4
            for (int j = 0; j < NV; ++j) bv[j] = *reinterpret_cast<const vec*>(bp + k * NR + j * SBK_TILE_V);
#pragma GCC unroll 32
            for (int r = 0; r < MR; ++r) {
                const float x = ap[r][k];
#pragma GCC unroll 4
                for (int j = 0; j < NV; ++j) acc[r][j] += bv[j] * x;
            }
        }
    }
    const vec zero{};
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) {
            vec v = acc[r][j];
            if (t.relu) v = v > zero ? v : zero;
            __builtin_memcpy(t.c + (t.c_rows ? t.c_rows[r] : r) * t.ldc + j * SBK_TILE_V, &v, sizeof v);
        }
    }
}

typedef int ivec __attribute__((vector_size(SBK_TILE_V * 4)));
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
template <int NV, class Rows>
struct TileTable;
template <int NV, int... R>
struct TileTable<NV, seq<R...>> {
    static constexpr sbk::TileFn fn[] = {nullptr, tile<R + 1, NV>...};
};

template <int MR, int NV>
sbk::Shape shape() {
    return {MR, NV * SBK_TILE_V, TileTable<NV, typename make_seq<MR>::type>::fn};
}

}  // namespace SBK_TILE_NS
#endif
