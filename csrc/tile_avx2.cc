// AVX2 + FMA tiles (built with -mavx2 -mfma): 8 floats a register, 16 registers.
#define SBK_TILE_V 8
#define SBK_TILE_NS sbk_avx2
#include "tile.h"

sbk::Isa sbk::isa_avx2() {
    return {"avx2", sbk_avx2::shape<6, 2>(), sbk_avx2::shape<12, 1>(), sbk_avx2::transpose};
}
