// AVX-512 tiles (built with -mavx512f -mfma): 16 floats a register.
#define SBK_TILE_V 16
#define SBK_TILE_NS sbk_avx512
#include "tile.h"

sbk::Isa sbk::isa_avx512() {
    return {"avx512", sbk_avx512::shape<12, 2>(), sbk_avx512::shape<24, 1>(), sbk_avx512::transpose};
}
