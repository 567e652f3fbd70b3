// The portable tiles: no instruction-set flags (on x86-64 the compiler may use the SSE2 baseline).
#define SBK_TILE_V 4
#define SBK_TILE_NS sbk_scalar
#include "tile.h"

sbk::Isa sbk::isa_scalar() {
    return {"scalar", sbk_scalar::shape<4, 2>(), sbk_scalar::shape<8, 1>(), sbk_scalar::transpose};
}
