// SBConv: one spatial bottleneck (SB_SPEC.md section 1) as one ONNX Runtime CPU custom op.
//
//   Y = Deconv(W2, b2) . [mid] . Sample_S . Conv(W1, b1, stride) (X)   [+ R] [ReLU]
//
// Inputs: X [N, Cin, H, W], W1 [Cmid, Cin, 3, 3], b1 [Cmid] (optional), W2 [Cmid, Cout, 3, 3]
// (ConvTranspose layout), b2 [Cout] (optional), R [N, Cout, Ho, Wo] (optional residual).
// Attributes: stride (1|2), sampling (a name: single, chessboard, three, dense, sb1..sb4; or a flat
// list of parity pairs, e.g. [0,0, 1,1]), mid_scale/mid_shift (per-Cmid affine, e.g. a folded BN) and
// mid_relu applied to the sampled conv outputs, relu (on the output, after the residual); in_scale/in_shift
// (per-Cin affine) and in_relu: a pre-activation applied to X as it is copied in (the zero padding stays zero).
//
// The conv runs only at the sampled positions and the transposed conv gathers only from them, each
// output parity class with its fixed tap list. Inputs are read through offset tables (indirect
// convolution: NHWC copies of X and of the sampled map, a zero row for the borders; the tables are built
// once per input size), weights are packed once when the kernel is created, and the work runs on the
// session's intra-op threads in four phases: X to NHWC, the conv (bias, mid and ReLU applied in
// registers), the transposed conv into an NHWC buffer, and that buffer to NCHW with R and the ReLU.
//
// Precision (attribute `precision`: fp32, bf16 or int8; inputs, outputs and weight initializers are fp32 in all):
// - bf16: X after the prologue, the mid map after mid/mid_relu and both weights (W1 with the mid scale folded in)
//   are rounded to bf16 (nearest even) and kept as channel pairs; products are summed in fp32 from the bias.
// - int8: X after the prologue is quantized to u8 by x_scale / x_zero_point, the mid map after mid/mid_relu by
//   m_scale / m_zero_point (q = clamp(nearbyint(v / scale) + zero, 0, 255)), the weights per output channel to
//   symmetric s8 here (Gemm::pack); channel quads are summed in s32, starting from -zero x the column's weights
//   (the zero rows hold the zero point, so borders add 0); then out = fma(acc, scale x weight scale, bias), the
//   mid affine in fp32 (fma again), ReLU, and the requantization of the mid map.
// Paths (sbdeploy_kernel_last_isa names the one a kernel took): fp32 on scalar, avx2 or avx512 tiles; bf16 with
// vdpbf16ps (avx512_bf16) and int8 with vpdpbusd (avx512_vnni) where the CPU has them, and otherwise on the same
// level's fp32-register tiles (bf16 as exact products summed in the same order, int8 in exact s32 multiplies):
// every path gives the same numbers (bf16 products of subnormal size aside: vdpbf16ps flushes them to zero).
// SBDEPLOY_KERNEL_ISA caps the level: avx512_bf16 > avx512_vnni > avx512 > avx2 > scalar.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "onnxruntime_c_api.h"
#include "tile.h"

// The API version asked of ONNX Runtime: the headers' own unless a test build raises it.
#ifndef SBK_API_VERSION
#define SBK_API_VERSION ORT_API_VERSION
#endif

#define SBK_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

const OrtApi* api = nullptr;
std::atomic<uint64_t> mac_count{0};
std::atomic<const char*> last_isa{"none"};

struct Error {
    std::string message;
};

void check(OrtStatus* status) {
    if (status) {
        std::string message = api->GetErrorMessage(status);
        api->ReleaseStatus(status);
        throw Error{message};
    }
}

// The instruction-set levels, each a superset of the one before: SBDEPLOY_KERNEL_ISA names one to cap at.
const char* const levels[] = {"scalar", "avx2", "avx512", "avx512_vnni", "avx512_bf16"};

// The best instruction set this CPU has, capped by SBDEPLOY_KERNEL_ISA.
sbk::Isa pick_isa() {
    int level = 0;
#ifndef SBK_SCALAR_ONLY
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) level = 1;
    if (level == 1 && __builtin_cpu_supports("avx512f")) level = 2;
    if (level == 2 && __builtin_cpu_supports("avx512vnni")) level = 3;
    if (level == 3 && __builtin_cpu_supports("avx512bf16")) level = 4;
#endif
    if (const char* cap = std::getenv("SBDEPLOY_KERNEL_ISA"); cap && *cap) {
        const auto asked = std::find(std::begin(levels), std::end(levels), std::string(cap));
        if (asked == std::end(levels))
            throw Error{std::string("SBDEPLOY_KERNEL_ISA must be avx512_bf16, avx512_vnni, avx512, avx2 or scalar, "
                                    "not '") +
                        cap + "'"};
        level = std::min(level, static_cast<int>(asked - std::begin(levels)));
    }
#ifndef SBK_SCALAR_ONLY
    if (level == 4) return sbk::isa_avx512_bf16();
    if (level == 3) return sbk::isa_avx512_vnni();
    if (level == 2) return sbk::isa_avx512();
    if (level == 1) return sbk::isa_avx2();
#endif
    return sbk::isa_scalar();
}

bool counting() {
    const char* flag = std::getenv("SBDEPLOY_KERNEL_COUNT_MACS");
    return flag && std::strcmp(flag, "1") == 0;
}

struct Tensor {
    const float* data;
    std::vector<int64_t> dims;
};

Tensor describe(const OrtValue* value) {
    OrtTensorTypeAndShapeInfo* info;
    check(api->GetTensorTypeAndShape(value, &info));
    size_t rank = 0;
    OrtStatus* status = api->GetDimensionsCount(info, &rank);
    std::vector<int64_t> dims(rank);
    if (!status) status = api->GetDimensions(info, dims.data(), rank);
    api->ReleaseTensorTypeAndShapeInfo(info);
    check(status);
    void* data;
    check(api->GetTensorMutableData(const_cast<OrtValue*>(value), &data));
    return {static_cast<const float*>(data), dims};
}

std::string shape_text(const std::vector<int64_t>& dims) {
    std::string text = "[";
    for (size_t i = 0; i < dims.size(); ++i) text += (i ? ", " : "") + std::to_string(dims[i]);
    return text + "]";
}

struct Free {
    void operator()(float* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<float[], Free>;

Buffer allocate(size_t floats) {
    void* p = std::aligned_alloc(64, (floats * sizeof(float) + 63) / 64 * 64);
    if (!p) throw Error{"SBConv: out of memory"};
    return Buffer(static_cast<float*>(p));
}

// fp32 to bf16, round to nearest even (as the tiles' to_bf16).
uint32_t bf16_bits(float v) {
    uint32_t u;
    std::memcpy(&u, &v, 4);
    return (u + 0x7fff + ((u >> 16) & 1)) >> 16;
}

// Whether the deconv's output parity class (2 * row parity + column parity) gathers through W2's tap t: its
// neighbour at offset (1 - t / 3, 1 - t % 3) is a sampled position.
bool gathers(const bool sampled[2][2], int parity, int t) {
    return sampled[((parity >> 1) + 1 - t / 3) & 1][((parity & 1) + 1 - t % 3) & 1];
}

// One of the two GEMMs: weights packed as [panel][tap 0..8][kc][nr] words (sbk::Tile), zero-padded to whole
// panels and words. int8 weights are quantized here: per column, symmetric s8, scale max |w| / 127 (1 where all
// are zero), w_q = clamp(nearbyint(w / scale), -127, 127).
struct Gemm {
    int k = 0, kc = 0, n = 0, panels = 0;  // k input channels in kc words, n output channels
    sbk::Shape shape{};
    Buffer w;
    std::vector<float> bias;   // panels * nr
    std::vector<float> scale;  // int8: the input's scale x each column's weight scale, panels * nr
    std::vector<int> start[4];  // int8: the accumulators' start, -zero point x the column's weights over the taps
                                // gathered (the conv: [0]; the deconv: by output parity class)
    std::vector<int> tap_sums;  // int8: [tap][col] sums of the s8 weights over k

    template <class Weight>
    void pack(const sbk::Tiles& tiles, sbk::Precision precision, int k_, int n_, Weight weight, const float* bias_,
              float in_scale) {
        k = k_;
        n = n_;
        const int per = sbk::per_word[precision];
        kc = (k + per - 1) / per;
        shape = n <= tiles.narrow.nr ? tiles.narrow : tiles.wide;
        const int nr = shape.nr;
        panels = (n + nr - 1) / nr;
        const size_t cols = static_cast<size_t>(panels) * nr;
        std::vector<float> w_scale(cols, 1.f);
        if (precision == sbk::int8)
            for (int col = 0; col < n; ++col) {
                float most = 0.f;
                for (int t = 0; t < 9; ++t)
                    for (int c = 0; c < k; ++c) most = std::max(most, std::fabs(weight(t, c, col)));
                if (most > 0.f) w_scale[col] = most / 127.f;
            }
        w = allocate(cols * 9 * kc);
        uint32_t* words = reinterpret_cast<uint32_t*>(w.get());
        tap_sums.assign(9 * cols, 0);
        for (int p = 0; p < panels; ++p)
            for (int t = 0; t < 9; ++t)
                for (int kw = 0; kw < kc; ++kw)
                    for (int j = 0; j < nr; ++j) {
                        const int col = p * nr + j;
                        uint32_t word = 0;
                        for (int e = 0; e < per; ++e) {
                            const int c = kw * per + e;
                            const float v = col < n && c < k ? weight(t, c, col) : 0.f;
                            if (precision == sbk::fp32) {
                                std::memcpy(&word, &v, 4);
                            } else if (precision == sbk::bf16) {
                                word |= bf16_bits(v) << (16 * e);
                            } else {
                                const float q_w = std::nearbyint(v / w_scale[col]);
                                const int q = static_cast<int>(std::clamp(q_w, -127.f, 127.f));
                                word |= uint32_t(uint8_t(q)) << (8 * e);
                                tap_sums[t * cols + col] += q;
                            }
                        }
                        words[((static_cast<size_t>(p) * 9 + t) * kc + kw) * nr + j] = word;
                    }
        bias.assign(cols, 0.f);
        if (bias_) std::copy(bias_, bias_ + n, bias.begin());
        if (precision == sbk::int8) {
            scale.assign(cols, 0.f);
            for (int col = 0; col < n; ++col) scale[col] = in_scale * w_scale[col];
        }
    }
    // int8: the accumulators' start for a zero point `zero` gathered through the taps `uses(t)` says.
    template <class Uses>
    std::vector<int> compensation(int zero, Uses uses) const {
        const size_t cols = bias.size();
        std::vector<int> out(cols, 0);
        for (int t = 0; t < 9; ++t)
            if (uses(t))
                for (size_t col = 0; col < cols; ++col) out[col] -= zero * tap_sums[t * cols + col];
        return out;
    }
    const float* panel(int p) const { return w.get() + static_cast<size_t>(p) * 9 * kc * shape.nr; }
    // Whether all panels stay in the L2 cache (1 MB or less).
    bool cached() const { return size_t(9) * kc * panels * shape.nr * sizeof(float) <= size_t(1) << 20; }
};

struct Kernel {
    int stride = 1, cin = 0, cmid = 0, cout = 0;
    sbk::Precision precision = sbk::fp32;
    float x_scale = 1.f, m_scale = 1.f;  // int8: the u8 quantization of the conv's and the deconv's inputs
    int x_zero = 0, m_zero = 0;
    int xg = 0;                                   // words an xt row holds: Cin padded to whole words
    std::vector<float> post_scale, post_shift;    // int8: the mid affine after the rescale (ldz each), or empty
    bool sampled[2][2] = {};
    bool mid_relu = false, out_relu = false, count = false;
    bool in_relu = false;                 // the pre-activation on X: relu(in_scale * x + in_shift), per Cin
    std::vector<float> in_scale, in_shift;  // empty: none
    const char* isa = "";
    sbk::TransposeFn transpose = nullptr;
    sbk::ConvertFn convert = nullptr;

    bool activates() const { return in_relu || !in_scale.empty(); }
    // The pre-activation on `count` NHWC rows of Cin values, as they are copied in (never on the zero row):
    // one branch-free loop the compiler vectorizes (scale 1, shift 0 and a floor of -inf where absent).
    void activate(float* rows, size_t count) const {
        const float* scale = in_scale.empty() ? ones.data() : in_scale.data();
        const float* shift = in_shift.empty() ? zeros.data() : in_shift.data();
        const float floor = in_relu ? 0.f : -std::numeric_limits<float>::infinity();
        for (size_t p = 0; p < count; ++p, rows += cin)
            for (int c = 0; c < cin; ++c) rows[c] = std::max(rows[c] * scale[c] + shift[c], floor);
    }
    std::vector<float> ones, zeros;  // Cin each: the identity affine
    Gemm conv, deconv;
    mutable std::mutex mutex;
    mutable std::shared_ptr<const struct Plan> plan;  // of the last input size

    std::shared_ptr<const Plan> plan_for(int h, int w) const;
    int ldz() const { return conv.panels * conv.shape.nr; }    // z's row stride: whole conv panels
    int zg() const { return ldz() / sbk::per_word[precision]; }  // in words
    int ldy() const { return deconv.panels * deconv.shape.nr; }  // and the NHWC output's
};

// Whether the string attribute `key` is there (then in `out`).
bool string_attribute(const OrtKernelInfo* info, const char* key, std::string& out) {
    size_t size = 0;
    if (OrtStatus* status = api->KernelInfoGetAttribute_string(info, key, nullptr, &size)) {
        api->ReleaseStatus(status);
        return false;
    }
    if (size == 0) return false;
    out.assign(size, '\0');
    check(api->KernelInfoGetAttribute_string(info, key, out.data(), &size));
    out.resize(std::strlen(out.c_str()));
    return true;
}

std::vector<int64_t> sampling_pairs(const OrtKernelInfo* info) {
    size_t size = 0;
    if (std::string name; string_attribute(info, "sampling", name)) {
        if (name == "single" || name == "sb1") return {0, 0};
        if (name == "chessboard" || name == "sb2") return {0, 0, 1, 1};
        if (name == "three" || name == "sb3") return {0, 0, 1, 1, 0, 1};
        if (name == "dense" || name == "sb4") return {0, 0, 0, 1, 1, 0, 1, 1};
        throw Error{"SBConv: unknown sampling '" + name + "'; choose single, chessboard, three or dense"};
    }
    size = 0;
    OrtStatus* status = api->KernelInfoGetAttributeArray_int64(info, "sampling", nullptr, &size);
    if (status) {
        api->ReleaseStatus(status);
        throw Error{"SBConv: attribute 'sampling' is required: a name or a flat list of parity pairs"};
    }
    std::vector<int64_t> pairs(size);
    check(api->KernelInfoGetAttributeArray_int64(info, "sampling", pairs.data(), &size));
    return pairs;
}

// Whether the float attribute `name` is there (then in `out`).
bool float_attribute(const OrtKernelInfo* info, const char* name, float& out) {
    if (OrtStatus* status = api->KernelInfoGetAttribute_float(info, name, &out)) {
        api->ReleaseStatus(status);
        return false;
    }
    return true;
}

int64_t int_attribute(const OrtKernelInfo* info, const char* name, int64_t fallback) {
    int64_t value = fallback;
    if (OrtStatus* status = api->KernelInfoGetAttribute_int64(info, name, &value)) {
        api->ReleaseStatus(status);
        return fallback;
    }
    return value;
}

std::vector<float> float_list(const OrtKernelInfo* info, const char* name) {
    size_t size = 0;
    if (OrtStatus* status = api->KernelInfoGetAttributeArray_float(info, name, nullptr, &size)) {
        api->ReleaseStatus(status);
        return {};
    }
    std::vector<float> values(size);
    check(api->KernelInfoGetAttributeArray_float(info, name, values.data(), &size));
    return values;
}

// The constant tensor at input `index`, or nullptr when that optional input is absent.
const OrtValue* constant_input(const OrtKernelInfo* info, size_t index, const char* what) {
    size_t count = 0;
    check(api->KernelInfo_GetInputCount(info, &count));
    if (index >= count) return nullptr;
    size_t size = 0;
    check(api->KernelInfo_GetInputName(info, index, nullptr, &size));
    if (size <= 1) return nullptr;
    int is_constant = 0;
    const OrtValue* value = nullptr;
    check(api->KernelInfoGetConstantInput_tensor(info, index, &is_constant, &value));
    if (!is_constant || !value) throw Error{std::string("SBConv: ") + what + " must be a constant initializer"};
    return value;
}

void expect(bool ok, const std::string& message) {
    if (!ok) throw Error{"SBConv: " + message};
}

// The precision attribute, and int8's quantization of the two GEMMs' inputs (only with int8, and then all four).
void read_precision(const OrtKernelInfo* info, Kernel& k) {
    std::string name = "fp32";
    string_attribute(info, "precision", name);
    const char* const names[] = {"fp32", "bf16", "int8"};
    const auto found = std::find(std::begin(names), std::end(names), name);
    expect(found != std::end(names), "precision must be fp32, bf16 or int8, not '" + name + "'");
    k.precision = static_cast<sbk::Precision>(found - std::begin(names));
    const char* const keys[] = {"x_scale", "x_zero_point", "m_scale", "m_zero_point"};
    float scales[2];
    int64_t zeros[2];
    int given = 0;
    for (int i = 0; i < 2; ++i) {
        given += float_attribute(info, keys[2 * i], scales[i]);
        zeros[i] = int_attribute(info, keys[2 * i + 1], INT64_MIN);
        given += zeros[i] != INT64_MIN;
    }
    if (k.precision != sbk::int8) {
        expect(given == 0, "x_scale, x_zero_point, m_scale and m_zero_point are for precision int8 only, not " + name);
        return;
    }
    expect(given == 4, "precision int8 needs x_scale, x_zero_point, m_scale and m_zero_point");
    for (int i = 0; i < 2; ++i) {
        expect(std::isfinite(scales[i]) && scales[i] > 0.f,
               std::string(keys[2 * i]) + " must be a positive finite number, got " + std::to_string(scales[i]));
        expect(zeros[i] >= 0 && zeros[i] <= 255,
               std::string(keys[2 * i + 1]) + " must be in 0..255, got " + std::to_string(zeros[i]));
    }
    k.x_scale = scales[0];
    k.m_scale = scales[1];
    k.x_zero = static_cast<int>(zeros[0]);
    k.m_zero = static_cast<int>(zeros[1]);
}

Kernel* create(const OrtKernelInfo* info) {
    auto kernel = std::make_unique<Kernel>();
    Kernel& k = *kernel;
    k.stride = static_cast<int>(int_attribute(info, "stride", 1));
    expect(k.stride == 1 || k.stride == 2, "stride must be 1 or 2, got " + std::to_string(k.stride));
    const std::vector<int64_t> pairs = sampling_pairs(info);
    expect(!pairs.empty() && pairs.size() % 2 == 0, "sampling must list parity pairs (a, b)");
    for (size_t i = 0; i < pairs.size(); i += 2) {
        expect((pairs[i] == 0 || pairs[i] == 1) && (pairs[i + 1] == 0 || pairs[i + 1] == 1),
               "sampling parities must be 0 or 1");
        expect(!k.sampled[pairs[i]][pairs[i + 1]], "sampling lists a parity pair twice");
        k.sampled[pairs[i]][pairs[i + 1]] = true;
    }
    k.mid_relu = int_attribute(info, "mid_relu", 0) != 0;
    k.out_relu = int_attribute(info, "relu", 0) != 0;

    const OrtValue* w1_value = constant_input(info, 1, "W1");
    const OrtValue* w2_value = constant_input(info, 3, "W2");
    expect(w1_value && w2_value, "W1 and W2 are required");
    const Tensor w1 = describe(w1_value), w2 = describe(w2_value);
    expect(w1.dims.size() == 4 && w1.dims[2] == 3 && w1.dims[3] == 3,
           "W1 must be [Cmid, Cin, 3, 3], got " + shape_text(w1.dims));
    expect(w2.dims.size() == 4 && w2.dims[2] == 3 && w2.dims[3] == 3,
           "W2 must be [Cmid, Cout, 3, 3] (ConvTranspose layout), got " + shape_text(w2.dims));
    expect(w1.dims[0] == w2.dims[0], "W1 " + shape_text(w1.dims) + " and W2 " + shape_text(w2.dims) +
                                         " disagree on Cmid (W1's dim 0, W2's dim 0)");
    k.cmid = static_cast<int>(w1.dims[0]);
    k.cin = static_cast<int>(w1.dims[1]);
    k.cout = static_cast<int>(w2.dims[1]);
    expect(k.cmid > 0 && k.cin > 0 && k.cout > 0, "W1 and W2 must not be empty");
    const float* b1 = nullptr;
    const float* b2 = nullptr;
    if (const OrtValue* v = constant_input(info, 2, "b1")) {
        const Tensor t = describe(v);
        expect(t.dims == std::vector<int64_t>{k.cmid}, "b1 must be [Cmid=" + std::to_string(k.cmid) + "], got " +
                                                           shape_text(t.dims));
        b1 = t.data;
    }
    if (const OrtValue* v = constant_input(info, 4, "b2")) {
        const Tensor t = describe(v);
        expect(t.dims == std::vector<int64_t>{k.cout}, "b2 must be [Cout=" + std::to_string(k.cout) + "], got " +
                                                           shape_text(t.dims));
        b2 = t.data;
    }
    std::vector<float> scale = float_list(info, "mid_scale"), shift = float_list(info, "mid_shift");
    expect(scale.empty() == shift.empty(), "mid_scale and mid_shift come together");
    expect(scale.empty() || (scale.size() == size_t(k.cmid) && shift.size() == size_t(k.cmid)),
           "mid_scale and mid_shift need Cmid=" + std::to_string(k.cmid) + " values each");

    k.in_scale = float_list(info, "in_scale");
    k.in_shift = float_list(info, "in_shift");
    k.in_relu = int_attribute(info, "in_relu", 0) != 0;
    k.ones.assign(static_cast<size_t>(k.cin), 1.f);
    k.zeros.assign(static_cast<size_t>(k.cin), 0.f);
    expect(k.in_scale.empty() == k.in_shift.empty(), "in_scale and in_shift come together");
    expect(k.in_scale.empty() || (k.in_scale.size() == size_t(k.cin) && k.in_shift.size() == size_t(k.cin)),
           "in_scale and in_shift need Cin=" + std::to_string(k.cin) + " values each");

    read_precision(info, k);
    // int8 sums up to 9 x C products of 255 x 127 (and its compensation as much) in s32.
    const int64_t widest_sum = int64_t(9) * 255 * 127 * std::max(k.cin, k.cmid);
    expect(k.precision != sbk::int8 || widest_sum < INT_MAX,
           "int8 takes at most " + std::to_string(INT_MAX / (9 * 255 * 127)) +
               " input channels a GEMM (s32 sums), got " + std::to_string(std::max(k.cin, k.cmid)));
    const sbk::Isa isa = pick_isa();
    const sbk::Tiles& tiles = isa.tiles[k.precision];
    k.isa = tiles.name;
    k.transpose = isa.transpose;
    k.convert = isa.convert;
    k.count = counting();
    k.xg = (k.cin + sbk::per_word[k.precision] - 1) / sbk::per_word[k.precision];
    // The mid affine is folded into W1's columns and the conv bias: scale * (W1 x + b1) + shift; int8 quantizes
    // W1 as it is and applies the affine after its rescale.
    const bool fold = !scale.empty() && k.precision != sbk::int8;
    std::vector<float> conv_bias(k.cmid);
    for (int m = 0; m < k.cmid; ++m) conv_bias[m] = fold ? scale[m] * (b1 ? b1[m] : 0.f) + shift[m] : b1 ? b1[m] : 0.f;
    const int cin = k.cin, cout = k.cout;
    k.conv.pack(
        tiles, k.precision, k.cin, k.cmid,
        [&](int t, int c, int m) { return w1.data[(size_t(m) * cin + c) * 9 + t] * (fold ? scale[m] : 1.f); },
        conv_bias.data(), k.x_scale);
    const auto w2_at = [&](int t, int m, int o) { return w2.data[(size_t(m) * cout + o) * 9 + t]; };
    k.deconv.pack(tiles, k.precision, k.cmid, k.cout, w2_at, b2, k.m_scale);
    if (k.precision == sbk::int8) {
        if (!scale.empty()) {
            k.post_scale.assign(k.ldz(), 0.f);
            k.post_shift.assign(k.ldz(), 0.f);
            std::copy(scale.begin(), scale.end(), k.post_scale.begin());
            std::copy(shift.begin(), shift.end(), k.post_shift.begin());
        }
        k.conv.start[0] = k.conv.compensation(k.x_zero, [](int) { return true; });
        for (int parity = 0; parity < 4; ++parity)
            k.deconv.start[parity] =
                k.deconv.compensation(k.m_zero, [&](int t) { return gathers(k.sampled, parity, t); });
    }
    last_isa = k.isa;
    return kernel.release();
}

// `count` rows in blocks of at most `most`, as even as can be: (first row, rows) of each.
std::vector<std::pair<int, int>> blocks_of(int count, int most) {
    const int blocks = (count + most - 1) / most;
    std::vector<std::pair<int, int>> out;
    for (int b = 0, row0 = 0; b < blocks; ++b) {
        const int rows = count / blocks + (b < count % blocks);
        out.emplace_back(row0, rows);
        row0 += rows;
    }
    return out;
}

// The offset tables of one input size, built on the first run at that size and then reused, laid out as the
// tiles read them: each tile's [tap][rows]. Tiles split their rows evenly (a 25-row conv takes 9 + 8 + 8 rows,
// not 12 + 12 + 1).
struct Plan {
    int h, w, ho, wo, m;  // m sampled positions per image
    struct Block {
        int parity, row0, rows;  // parity: the deconv's output class (0 for the conv)
        size_t at;               // its [taps][rows] offsets start at conv_at[at] or gather_at[at]
    };
    std::vector<Block> tiles;        // the conv's, over the sampled positions
    std::vector<int> conv_at;        // offsets in an image's xt (words)
    struct Band {
        size_t first, last;  // its blocks
        int p0, p1;          // its output positions
    };
    std::vector<Band> bands;         // the deconv's bands of output rows, or one band a block (positions unset)
    bool fused;                      // whether a deconv task also copies its bands' outputs to NCHW
    std::vector<Block> blocks;       // the deconv's, by band, then output parity class
    std::vector<int> class_rows[4];  // output positions of each parity class
    std::vector<int> class_taps[4];  // the taps (0..8) each class gathers
    std::vector<int> gather_at;      // offsets in an image's z (words)

    Plan(const Kernel& kernel, int h_, int w_);
};

Plan::Plan(const Kernel& kernel, int h_, int w_) : h(h_), w(w_) {
    const Kernel* k = &kernel;
    ho = (h - 1) / k->stride + 1;
    wo = (w - 1) / k->stride + 1;
    m = 0;
    std::vector<int> row_of(static_cast<size_t>(ho) * wo, -1), positions;
    for (int i = 0; i < ho; ++i)
        for (int j = 0; j < wo; ++j)
            if (k->sampled[i & 1][j & 1]) {
                row_of[i * wo + j] = m++;
                positions.push_back(i * wo + j);
            }
    const int xt_zero = h * w * k->xg;
    for (auto [row0, rows] : blocks_of(m, k->conv.shape.mr)) {
        tiles.push_back({0, row0, rows, conv_at.size()});
        conv_at.resize(conv_at.size() + 9 * rows, xt_zero);
        for (int r = 0; r < rows; ++r) {
            const int i = positions[row0 + r] / wo, j = positions[row0 + r] % wo;
            for (int t = 0; t < 9; ++t) {
                const int yi = i * k->stride + t / 3 - 1, xj = j * k->stride + t % 3 - 1;
                if (yi >= 0 && yi < h && xj >= 0 && xj < w)
                    conv_at[tiles.back().at + t * rows + r] = (yi * w + xj) * k->xg;
            }
        }
    }
    // Output p gathers z[q] for q = p + d with q sampled, through W2's tap (1 - d): y = sum W2^T z.
    const int ldz = k->zg(), z_zero = m * ldz;
    for (int parity = 0; parity < 4; ++parity) {
        const int pi = parity >> 1, pj = parity & 1;
        for (int t = 0; t < 9; ++t)
            if (gathers(k->sampled, parity, t)) class_taps[parity].push_back(t);
        std::vector<int>& outputs = class_rows[parity];
        for (int i = pi; i < ho; i += 2)
            for (int j = pj; j < wo; j += 2) outputs.push_back(i * wo + j);
    }
    // With cached weights and 4 bands or more (of an even number of rows, 16 bands at most, each class's rows
    // in a band filling two tiles), a deconv task also copies its bands' outputs to NCHW. Otherwise blocks span
    // the image, and the copy is a phase of its own.
    const int band_rows = 2 * std::max((ho + 31) / 32, (4 * k->deconv.shape.mr + wo - 1) / wo);
    fused = k->deconv.cached() && ho >= 4 * band_rows;
    for (int i0 = 0; i0 < ho; i0 += fused ? band_rows : ho) {
        const int p0 = i0 * wo, p1 = std::min(ho, fused ? i0 + band_rows : ho) * wo;
        const size_t first = blocks.size();
        for (int parity = 0; parity < 4; ++parity) {
            const std::vector<int>& outputs = class_rows[parity];
            const std::vector<int>& taps = class_taps[parity];
            const int ntaps = static_cast<int>(taps.size());
            const int lo = static_cast<int>(std::lower_bound(outputs.begin(), outputs.end(), p0) - outputs.begin());
            const int hi = static_cast<int>(std::lower_bound(outputs.begin(), outputs.end(), p1) - outputs.begin());
            for (auto [row0, rows] : blocks_of(hi - lo, k->deconv.shape.mr)) {
                blocks.push_back({parity, lo + row0, rows, gather_at.size()});
                gather_at.resize(gather_at.size() + static_cast<size_t>(ntaps) * rows, z_zero);
                for (int r = 0; r < rows; ++r)
                    for (int s = 0; s < ntaps; ++s) {
                        const int i = outputs[lo + row0 + r] / wo, j = outputs[lo + row0 + r] % wo;
                        const int qi = i + 1 - taps[s] / 3, qj = j + 1 - taps[s] % 3;
                        if (qi >= 0 && qi < ho && qj >= 0 && qj < wo)
                            gather_at[blocks.back().at + s * rows + r] = row_of[qi * wo + qj] * ldz;
                    }
            }
        }
        if (fused) bands.push_back({first, blocks.size(), p0, p1});
    }
    if (!fused)
        for (size_t b = 0; b < blocks.size(); ++b) bands.push_back({b, b + 1, 0, 0});
}

// A phase's work: `units` (image, tile or band) pairs for each weight panel, in tasks enough to keep the threads
// busy.
// Large weights go panel by panel (a task is a run of units of one panel: each panel read once for all of
// them); weights that stay in the L2 cache go unit by unit (a task runs all panels of its units while their
// inputs are in cache), so large activations are read once.
struct Split {
    static constexpr size_t min_tasks = 16;
    size_t units = 0, per_task = 1, chunks = 0;
    int panels = 1;
    bool by_panel = false;

    Split() = default;
    Split(size_t units_, const Gemm& g) : units(units_), panels(g.panels) {
        by_panel = !g.cached();
        const size_t per_panel = by_panel ? (min_tasks + panels - 1) / panels : min_tasks;
        const size_t wanted = std::max<size_t>(1, std::min(units, per_panel));
        per_task = std::max<size_t>(1, (units + wanted - 1) / wanted);
        chunks = (units + per_task - 1) / per_task;
    }
    size_t tasks() const { return by_panel ? chunks * panels : chunks; }
    size_t first(size_t task) const { return task % chunks * per_task; }
    size_t last(size_t task) const { return std::min(units, first(task) + per_task); }
    int first_panel(size_t task) const { return by_panel ? static_cast<int>(task / chunks) : 0; }
    int last_panel(size_t task) const { return by_panel ? first_panel(task) + 1 : panels; }
};

// A build with -DSBK_PROFILE adds up each phase's time (set-up, transpose in, conv, deconv, transpose out: part
// of the deconv when the plan fuses them) and prints the totals to stderr at exit; otherwise this is empty.
#ifdef SBK_PROFILE
struct Phases {
    static inline std::atomic<int64_t> total[5]{}, runs{0};
    std::chrono::steady_clock::time_point last = std::chrono::steady_clock::now();
    void lap(int phase) {
        const auto now = std::chrono::steady_clock::now();
        total[phase] += std::chrono::duration_cast<std::chrono::nanoseconds>(now - last).count();
        last = now;
        if (phase == 4) ++runs;
    }
    static void report() {
        if (!runs) return;
        const double us = 1e3 * runs;
        std::fprintf(stderr, "SBConv us a run (%ld runs): set-up %.1f in %.1f conv %.1f deconv %.1f out %.1f\n",
                     long(runs), total[0] / us, total[1] / us, total[2] / us, total[3] / us, total[4] / us);
    }
};
const int profile_report = std::atexit(Phases::report);
#else
struct Phases {
    void lap(int) {}
};
#endif

struct Run;
template <void (Run::*phase)(size_t)>
void run_task(void* run, size_t task);

// The geometry and buffers of one run; the four phases run on the session's thread pool.
struct Run {
    const Kernel* k;
    std::shared_ptr<const Plan> plan;
    const Plan* p;
    int n;
    const float* x;
    const float* residual;
    float* y;
    // NHWC input (and a zero row) and the sampled conv outputs [m][ldz] (and a zero row), in the kernel's
    // precision; the NHWC output in fp32. Sizes in words.
    Buffer xt, z, yt;
    size_t xt_image, z_image, yt_image;
    Split conv_split, deconv_split;

    static constexpr int chunk = 128;  // positions a transpose task copies
    static size_t chunks(size_t plane) { return (plane + chunk - 1) / chunk; }

    void transpose_in(size_t task) {
        const size_t plane = static_cast<size_t>(p->h) * p->w, image = task / chunks(plane);
        const size_t p0 = task % chunks(plane) * chunk;
        const int cols = static_cast<int>(std::min<size_t>(chunk, plane - p0));
        thread_local std::vector<float> staging;  // bf16 and int8: the fp32 rows before their conversion
        if (k->precision != sbk::fp32) staging.resize(static_cast<size_t>(cols) * k->cin);
        float* words = xt.get() + image * xt_image + p0 * k->xg;
        float* dst = k->precision == sbk::fp32 ? words : staging.data();
        k->transpose({x + image * k->cin * plane + p0, static_cast<long>(plane), dst, k->cin, k->cin, cols, nullptr,
                      false});
        if (k->activates()) k->activate(dst, static_cast<size_t>(cols));
        if (k->precision != sbk::fp32)
            k->convert({dst, cols, k->cin, words, k->xg * sbk::per_word[k->precision], k->precision, k->x_scale,
                        k->x_zero});
    }

    // Output positions [p0, p1) of an image to NCHW, with the residual added and the ReLU applied on the way.
    void output(size_t image, int p0, int p1) {
        const size_t at = image * k->cout * p->ho * p->wo + p0;
        k->transpose({yt.get() + image * yt_image + size_t(p0) * k->ldy(), k->ldy(), y + at,
                      static_cast<long>(p->ho) * p->wo, p1 - p0, k->cout, residual ? residual + at : nullptr,
                      k->out_relu});
    }

    void transpose_out(size_t task) {
        const size_t plane = static_cast<size_t>(p->ho) * p->wo, p0 = task % chunks(plane) * chunk;
        output(task / chunks(plane), static_cast<int>(p0), static_cast<int>(std::min(plane, p0 + chunk)));
    }

    // A tile's arguments for panel `panel` of g, inputs from `base`, output to `c` (ldc elements a row).
    sbk::Tile tile_of(const Gemm& g, int panel, const float* base, const int* at, const int* taps, int ntaps,
                      int parity, void* c, const int* c_rows, long ldc, bool relu, bool post) const {
        const size_t col = static_cast<size_t>(panel) * g.shape.nr;
        const bool int8 = k->precision == sbk::int8;
        post = post && !k->post_scale.empty();
        return {base, at, g.panel(panel), taps, ntaps, g.kc, g.bias.data() + col,
                int8 ? g.start[parity].data() + col : nullptr, int8 ? g.scale.data() + col : nullptr,
                post ? k->post_scale.data() + col : nullptr, post ? k->post_shift.data() + col : nullptr,
                c, c_rows, ldc, relu, k->m_scale, k->m_zero};
    }

    void conv(size_t task) {
        const Gemm& g = k->conv;
        const int nr = g.shape.nr, ldz = k->ldz(), bytes = 4 / sbk::per_word[k->precision];  // of a z element
        static const int all_taps[9] = {0, 1, 2, 3, 4, 5, 6, 7, 8};
        for (size_t unit = conv_split.first(task); unit < conv_split.last(task); ++unit)
            for (int panel = conv_split.first_panel(task); panel < conv_split.last_panel(task); ++panel) {
                const int image = static_cast<int>(unit / p->tiles.size());
                const Plan::Block& tile = p->tiles[unit % p->tiles.size()];
                char* out = reinterpret_cast<char*>(z.get() + image * z_image) +
                            (static_cast<size_t>(tile.row0) * ldz + panel * nr) * bytes;
                g.shape.fn_q[tile.rows](tile_of(g, panel, xt.get() + image * xt_image, p->conv_at.data() + tile.at,
                                                all_taps, 9, 0, out, nullptr, ldz, k->mid_relu, true));
                if (k->count) {
                    const int cols = std::min(nr, g.n - panel * nr);
                    mac_count.fetch_add(uint64_t(tile.rows) * 9 * g.k * cols, std::memory_order_relaxed);
                }
            }
    }

    // When the plan fuses them, a task also copies its bands' outputs to NCHW.
    void deconv(size_t task) {
        const Gemm& g = k->deconv;
        const int nr = g.shape.nr;
        for (size_t unit = deconv_split.first(task); unit < deconv_split.last(task); ++unit) {
            const int image = static_cast<int>(unit / p->bands.size());
            const Plan::Band& band = p->bands[unit % p->bands.size()];
            for (int panel = deconv_split.first_panel(task); panel < deconv_split.last_panel(task); ++panel)
                for (size_t b = band.first; b < band.last; ++b) {
                    const Plan::Block& block = p->blocks[b];
                    const std::vector<int>& taps = p->class_taps[block.parity];
                    const int ntaps = static_cast<int>(taps.size());
                    g.shape.fn[block.rows](tile_of(g, panel, z.get() + image * z_image, p->gather_at.data() + block.at,
                                                   taps.data(), ntaps, block.parity,
                                                   yt.get() + image * yt_image + panel * nr,
                                                   p->class_rows[block.parity].data() + block.row0, k->ldy(), false,
                                                   false));
                    if (k->count) {
                        const int cols = std::min(nr, g.n - panel * nr);
                        mac_count.fetch_add(uint64_t(block.rows) * ntaps * g.k * cols, std::memory_order_relaxed);
                    }
                }
            if (p->fused) output(image, band.p0, band.p1);
        }
    }

    // Buffers for `images` at a time: as many as keep them within the L2 cache (or within the weights' size,
    // when the weights are the larger), so each image's data stays in cache from phase to phase.
    int prepare() {
        xt_image = static_cast<size_t>(p->h) * p->w * k->xg + k->xg;
        z_image = static_cast<size_t>(p->m + 1) * k->zg();
        yt_image = static_cast<size_t>(p->ho) * p->wo * k->ldy();
        const size_t weights = size_t(9) * (k->conv.kc * k->ldz() + k->deconv.kc * k->ldy());
        const size_t budget = std::max<size_t>(size_t(1) << 18, weights);  // floats: 1 MB at least
        const int images = static_cast<int>(std::clamp<size_t>(budget / (xt_image + z_image + yt_image), 1, n));
        xt = allocate(images * xt_image);
        z = allocate(images * z_image);
        yt = allocate(images * yt_image);
        // The zero rows hold 0 (fp32, bf16) or the zero point (int8: u8 values that stand for 0).
        const bool int8 = k->precision == sbk::int8;
        for (int image = 0; image < images; ++image) {
            std::memset(xt.get() + image * xt_image + xt_image - k->xg, int8 ? k->x_zero : 0, 4 * k->xg);
            std::memset(z.get() + image * z_image + z_image - k->zg(), int8 ? k->m_zero : 0, 4 * k->zg());
        }
        return images;
    }

    // Runs the four phases on `count` images of X (R, Y), from image `first`.
    void images(OrtKernelContext* context, const float* x_all, const float* r_all, float* y_all, int first, int count) {
        Phases phases;
        n = count;
        x = x_all + size_t(first) * k->cin * p->h * p->w;
        const size_t out = size_t(first) * k->cout * p->ho * p->wo;
        y = y_all + out;
        residual = r_all ? r_all + out : nullptr;
        conv_split = Split(size_t(n) * p->tiles.size(), k->conv);
        deconv_split = Split(size_t(n) * p->bands.size(), k->deconv);
        phases.lap(0);
        const size_t in_tasks = n * chunks(size_t(p->h) * p->w), out_tasks = n * chunks(size_t(p->ho) * p->wo);
        check(api->KernelContext_ParallelFor(context, run_task<&Run::transpose_in>, in_tasks, 0, this));
        phases.lap(1);
        if (p->m > 0) check(api->KernelContext_ParallelFor(context, run_task<&Run::conv>, conv_split.tasks(), 0, this));
        phases.lap(2);
        check(api->KernelContext_ParallelFor(context, run_task<&Run::deconv>, deconv_split.tasks(), 0, this));
        phases.lap(3);
        if (!p->fused)
            check(api->KernelContext_ParallelFor(context, run_task<&Run::transpose_out>, out_tasks, 0, this));
        phases.lap(4);
    }
};

std::shared_ptr<const Plan> Kernel::plan_for(int h, int w) const {
    std::lock_guard<std::mutex> lock(mutex);
    if (!plan || plan->h != h || plan->w != w) plan = std::make_shared<const Plan>(*this, h, w);
    return plan;
}

template <void (Run::*phase)(size_t)>
void run_task(void* run, size_t task) {
    (static_cast<Run*>(run)->*phase)(task);
}

void compute(const Kernel& k, OrtKernelContext* context) {
    const OrtValue* x_value = nullptr;
    check(api->KernelContext_GetInput(context, 0, &x_value));
    const Tensor x = describe(x_value);
    expect(x.dims.size() == 4 && x.dims[1] == k.cin,
           "X must be [N, Cin=" + std::to_string(k.cin) + ", H, W], got " + shape_text(x.dims));
    // The offset tables are 32-bit: one image's NHWC copies (and their zero rows) must stay below 2^31 floats.
    const int64_t widest = std::max<int64_t>({k.cin, k.cmid, k.cout}) + 64;
    expect(x.dims[0] < INT_MAX && (x.dims[2] + 1) * (x.dims[3] + 1) * widest < INT_MAX,
           "X " + shape_text(x.dims) + " is too large for SBConv (one image's activations must stay below 2^31 values)");
    const int n = static_cast<int>(x.dims[0]), h = static_cast<int>(x.dims[2]), w = static_cast<int>(x.dims[3]);
    const int ho = h > 0 ? (h - 1) / k.stride + 1 : 0, wo = w > 0 ? (w - 1) / k.stride + 1 : 0;
    const std::vector<int64_t> out_dims = {n, k.cout, ho, wo};
    Run run{};
    run.k = &k;
    run.n = n;
    run.x = x.data;
    size_t inputs = 0;
    check(api->KernelContext_GetInputCount(context, &inputs));
    const OrtValue* r_value = nullptr;
    if (inputs > 5) check(api->KernelContext_GetInput(context, 5, &r_value));
    if (r_value) {
        const Tensor r = describe(r_value);
        expect(r.dims == out_dims,
               "R must be the output's shape " + shape_text(out_dims) + ", got " + shape_text(r.dims));
        run.residual = r.data;
    }
    OrtValue* y_value = nullptr;
    check(api->KernelContext_GetOutput(context, 0, out_dims.data(), out_dims.size(), &y_value));
    void* y = nullptr;
    check(api->GetTensorMutableData(y_value, &y));
    run.y = static_cast<float*>(y);
    if (n == 0 || ho == 0 || wo == 0) return;
    run.plan = k.plan_for(h, w);
    run.p = run.plan.get();
    const int group = run.prepare();
    const float *x_all = run.x, *r_all = run.residual;
    float* y_all = run.y;
    for (int first = 0; first < n; first += group)
        run.images(context, x_all, r_all, y_all, first, std::min(group, n - first));
}

OrtStatus* status_of(const Error& e) { return api->CreateStatus(ORT_INVALID_ARGUMENT, e.message.c_str()); }

OrtStatus* ORT_API_CALL create_kernel(const OrtCustomOp*, const OrtApi*, const OrtKernelInfo* info, void** out) {
    try {
        *out = create(info);
        return nullptr;
    } catch (const Error& e) {
        return status_of(e);
    } catch (const std::exception& e) {
        return api->CreateStatus(ORT_FAIL, (std::string("SBConv: ") + e.what()).c_str());
    }
}

OrtStatus* ORT_API_CALL compute_kernel(void* kernel, OrtKernelContext* context) {
    try {
        compute(*static_cast<Kernel*>(kernel), context);
        return nullptr;
    } catch (const Error& e) {
        return status_of(e);
    } catch (const std::exception& e) {
        return api->CreateStatus(ORT_FAIL, (std::string("SBConv: ") + e.what()).c_str());
    }
}

void ORT_API_CALL destroy_kernel(void* kernel) { delete static_cast<Kernel*>(kernel); }

OrtCustomOpInputOutputCharacteristic ORT_API_CALL input_kind(const OrtCustomOp*, size_t index) {
    return index == 2 || index >= 4 ? INPUT_OUTPUT_OPTIONAL : INPUT_OUTPUT_REQUIRED;
}

OrtCustomOp make_op() {
    OrtCustomOp op{};
    op.version = ORT_API_VERSION;
    op.GetName = [](const OrtCustomOp*) { return "SBConv"; };
    op.GetExecutionProviderType = [](const OrtCustomOp*) { return "CPUExecutionProvider"; };
    op.GetInputType = [](const OrtCustomOp*, size_t) { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; };
    op.GetInputTypeCount = [](const OrtCustomOp*) -> size_t { return 6; };
    op.GetOutputType = [](const OrtCustomOp*, size_t) { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; };
    op.GetOutputTypeCount = [](const OrtCustomOp*) -> size_t { return 1; };
    op.GetInputCharacteristic = input_kind;
    op.GetOutputCharacteristic = [](const OrtCustomOp*, size_t) { return INPUT_OUTPUT_REQUIRED; };
    op.GetInputMemoryType = [](const OrtCustomOp*, size_t) { return OrtMemTypeDefault; };
    op.GetVariadicInputMinArity = [](const OrtCustomOp*) { return 1; };
    op.GetVariadicInputHomogeneity = [](const OrtCustomOp*) { return 1; };
    op.GetVariadicOutputMinArity = [](const OrtCustomOp*) { return 1; };
    op.GetVariadicOutputHomogeneity = [](const OrtCustomOp*) { return 1; };
    op.CreateKernelV2 = create_kernel;
    op.KernelComputeV2 = compute_kernel;
    op.KernelDestroy = destroy_kernel;
    op.GetStartVersion = [](const OrtCustomOp*) { return 1; };
    op.GetEndVersion = [](const OrtCustomOp*) { return INT_MAX; };
    return op;
}

const OrtCustomOp sbconv_op = make_op();

}  // namespace

// ONNX Runtime's entry point (SessionOptions.register_custom_ops_library).
SBK_EXPORT OrtStatus* ORT_API_CALL RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* base) {
    const OrtApi* asked = base->GetApi(SBK_API_VERSION);
    if (!asked) {
        const std::string message = std::string("sbdeploy's kernel library needs ONNX Runtime API version ") +
                                    std::to_string(SBK_API_VERSION) + " (onnxruntime 1." +
                                    std::to_string(SBK_API_VERSION) + " or newer); this onnxruntime is " +
                                    base->GetVersionString();
        return base->GetApi(1)->CreateStatus(ORT_FAIL, message.c_str());
    }
    api = asked;
    OrtCustomOpDomain* domain = nullptr;  // kept for the process's life: sessions refer to it
    if (OrtStatus* status = api->CreateCustomOpDomain("sbdeploy.ai", &domain)) return status;
    if (OrtStatus* status = api->CustomOpDomain_Add(domain, &sbconv_op)) return status;
    return api->AddCustomOpDomain(options, domain);
}

// MACs performed since the last reset by kernels created with SBDEPLOY_KERNEL_COUNT_MACS=1.
SBK_EXPORT uint64_t sbdeploy_kernel_macs() { return mac_count.load(); }
SBK_EXPORT void sbdeploy_kernel_reset_macs() { mac_count.store(0); }

// The instruction set of the kernel created last ("none" before any).
SBK_EXPORT const char* sbdeploy_kernel_last_isa() { return last_isa.load(); }

// The instruction set a kernel created now would use, or an error text for a bad SBDEPLOY_KERNEL_ISA.
SBK_EXPORT const char* sbdeploy_kernel_isa() {
    try {
        return pick_isa().name;
    } catch (const Error&) {
        return "invalid SBDEPLOY_KERNEL_ISA";
    }
}
