// The register-tiled micro-kernel of both SB GEMMs (conv at the sampled positions, transposed conv from
// them). Each tile_*.cc includes this header with its own vector width and compiler flags, so the
// instruction set is chosen at run time and no AVX code runs on a machine without it.
#pragma once

namespace sbk {

// One mr x nr output tile: rows read their inputs through offsets (indirection, no im2col copy), the
// accumulators start from the bias, and the first `rows` rows are stored (ReLU'd if asked) at c + r * ldc.
struct Tile {
    const float* base;  // the image's inputs
    const int* at;      // at[s * mr + r]: where row r's kc inputs for its s-th tap start (a zero row at borders)
    const float* b;     // packed weight panel: tap k's kc x nr block starts at b + k * kc * nr
    const int* taps;    // the tap numbers (0..8) the rows gather, ntaps of them
    int ntaps, kc;
    const float* bias;  // nr values
    float* c;
    long ldc;
    int rows;
    bool relu;
};
using TileFn = void (*)(const Tile&);

// A tile shape and its kernel; `narrow` is for layers with few output channels.
struct Shape {
    int mr, nr;
    TileFn fn;
};

struct Isa {
    const char* name;
    Shape wide, narrow;
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
        if (r >= t.rows) break;
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) {
            vec v = acc[r][j];
            if (t.relu) v = v > zero ? v : zero;
            __builtin_memcpy(t.c + r * t.ldc + j * SBK_TILE_V, &v, sizeof v);
        }
    }
}

}  // namespace SBK_TILE_NS
#endif
