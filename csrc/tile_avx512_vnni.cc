// AVX-512 VNNI int8 tiles (built with -mavx512f -mfma -mavx512vnni): vpdpbusd adds 4 u8 x s8 products a lane.
#include <immintrin.h>
#define SBK_TILE_V 16
#define SBK_TILE_NS sbk_avx512_vnni
#include "tile.h"

namespace sbk_avx512_vnni {
struct Vnni : I8 {
    static acc madd(acc c, wvec b, unsigned a) {
        return acc(_mm512_dpbusd_epi32(__m512i(c), _mm512_set1_epi32(int(a)), __m512i(b)));
    }
};
}  // namespace sbk_avx512_vnni

sbk::Tiles sbk::tiles_avx512_vnni() {
    using namespace sbk_avx512_vnni;
    return {"avx512_vnni", shape<Vnni, 12, 2>(), shape<Vnni, 24, 1>()};
}
