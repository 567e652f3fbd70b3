// AVX-512 tiles (built with -mavx512f -mfma): 16 floats a register. bf16 and int8 here run without their
// instructions (exact, same numbers); the two extensions' units put theirs in on CPUs that have them.
#define SBK_TILE_V 16
#define SBK_TILE_NS sbk_avx512
#include "tile.h"

sbk::Isa sbk::isa_avx512() {
    using namespace sbk_avx512;
    return {"avx512",
            {{"avx512", shape<F32, 12, 2>(), shape<F32, 24, 1>()},
             {"avx512", shape<BF16, 12, 2>(), shape<BF16, 24, 1>()},
             {"avx512", shape<I8, 8, 2>(), shape<I8, 16, 1>()}},
            transpose,
            convert};
}

sbk::Isa sbk::isa_avx512_vnni() {
    Isa isa = isa_avx512();
    isa.name = "avx512_vnni";
    isa.tiles[int8] = tiles_avx512_vnni();
    return isa;
}

sbk::Isa sbk::isa_avx512_bf16() {
    Isa isa = isa_avx512_vnni();
    isa.name = "avx512_bf16";
    isa.tiles[bf16] = tiles_avx512_bf16();
    return isa;
}
