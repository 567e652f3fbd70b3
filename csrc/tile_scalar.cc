// The portable tiles: no instruction-set flags (on x86-64 the compiler may use the SSE2 baseline).
#define SBK_TILE_V 4
#define SBK_TILE_NS sbk_scalar
#include "tile.h"

sbk::Isa sbk::isa_scalar() {
    using namespace sbk_scalar;
    return {"scalar",
            {{"scalar", shape<F32, 4, 2>(), shape<F32, 8, 1>()},
             {"scalar", shape<BF16, 4, 2>(), shape<BF16, 8, 1>()},
             {"scalar", shape<I8, 4, 2>(), shape<I8, 8, 1>()}},
            transpose,
            convert};
}
