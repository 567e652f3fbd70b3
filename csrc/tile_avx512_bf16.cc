// AVX-512 BF16 tiles (built with -mavx512f -mfma -mavx512bf16): vdpbf16ps adds 2 bf16 products a lane in fp32.
#include <immintrin.h>
#define SBK_TILE_V 16
#define SBK_TILE_NS sbk_avx512_bf16
#include "tile.h"

namespace sbk_avx512_bf16 {
struct Dot : BF16 {
    static acc madd(acc c, wvec b, unsigned a) {
        return acc(_mm512_dpbf16_ps(__m512(c), __m512bh(b), __m512bh(_mm512_set1_epi32(int(a)))));
    }
};
}  // namespace sbk_avx512_bf16

sbk::Tiles sbk::tiles_avx512_bf16() {
    using namespace sbk_avx512_bf16;
    return {"avx512_bf16", shape<Dot, 12, 2>(), shape<Dot, 24, 1>()};
}
