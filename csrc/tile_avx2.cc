// AVX2 + FMA tiles (built with -mavx2 -mfma): 8 floats a register, 16 registers.
#define SBK_TILE_V 8
#define SBK_TILE_NS sbk_avx2
#include "tile.h"

sbk::Isa sbk::isa_avx2() {
    return {"avx2", {6, 16, sbk_avx2::tile<6, 2>}, {12, 8, sbk_avx2::tile<12, 1>}, sbk_avx2::transpose};
}
