// AVX2 + FMA tiles (built with -mavx2 -mfma): 8 floats a register, 16 registers. bf16 and int8 run exact
// without their instructions (int8 in s32 multiplies: never pmaddubsw, which saturates).
#define SBK_TILE_V 8
#define SBK_TILE_NS sbk_avx2
#include "tile.h"

sbk::Isa sbk::isa_avx2() {
    using namespace sbk_avx2;
    return {"avx2",
            {{"avx2", shape<F32, 6, 2>(), shape<F32, 12, 1>()},
             {"avx2", shape<BF16, 4, 2>(), shape<BF16, 8, 1>()},
             {"avx2", shape<I8, 4, 2>(), shape<I8, 8, 1>()}},
            transpose,
            convert};
}
