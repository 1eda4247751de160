#pragma once
// The qsched export format (.qsx): a hardened INQ or ANA network as a compact, self-checking file
// that a ternary / shift-based accelerator (or inner/export/reference.h) consumes without LibTorch.
//
// This header and format.cpp use only the standard library, nlohmann::json and zlib (crc32):
// no torch. They are built as their own library, qsched_export_ref (inner/CMakeLists.txt), without
// torch's include paths or precompiled header, so a torch include here fails the build. The
// writer side that reads a trained network lives in inner/export/writer.h.
//
// File layout (all integers little-endian):
//
//   offset 0   char[8]  magic "QSCHEDX1"
//          8   u32      version: 1 (INQ only) or 2 (= kFormatVersion; adds level codes and the
//                       "quantizers" header section for ANA). Readers accept both; writers
//                       write 2.
//         12   u32      header_bytes H
//         16   u64      payload_bytes P = H + sum of record sizes (the file is 32 + P bytes)
//         24   u32      crc32 (zlib) of the P payload bytes
//         28   u32      record_count R
//         32   H bytes  header: UTF-8 JSON, see below
//     32 + H   R records, back to back, no padding:
//                u16    name_bytes; char name[name_bytes]     e.g. "features.conv1.weight"
//                u8     type: 1 = pow2 codes, 2 = float32, 3 = level codes (version >= 2)
//                u8     bits per element: 2..8 for pow2 codes, 1..8 for level codes, 32 float32
//                u8     ndim (1..4)
//                u8     reserved, 0
//                i32    n1, i32 n2    pow2 codes: the layer's codebook exponents;
//                                     level codes: n1 = number of levels L (2..2^bits), n2 = 0;
//                                     float32: 0, 0
//                u32    dims[ndim]    row-major (PyTorch) shape
//                u64    data_bytes    codes: ceil(numel·bits / 8); float32: 4·numel
//                data
//
// Codes (type 1). An INQ layer with bit-width b has weights in {0, ±2^k : n2 <= k <= n1},
// n1 - n2 + 1 = 2^(b-2) exponents, 2^(b-1) + 1 levels, hence exactly b bits per weight
// (ternary, b = 2: 2 bits). The b-bit code of one weight is sign-magnitude:
//
//     bit b-1        bits b-2 .. 0
//     sign (1 = -)   e = 0 for a zero weight, else e = k - n2 + 1  (1 .. 2^(b-2))
//
//   weight = 0 when e = 0, else (-1)^sign · 2^(n2 + e - 1).
//   Ternary: 00 = 0, 01 = +2^n1, 11 = -2^n1; 10 ("-0") and e > 2^(b-2) are invalid codes.
// Codes are packed LSB-first into a bit stream: weight i (row-major) occupies bits
// [i·b, (i+1)·b) of the little-endian byte sequence; the last byte is zero-padded.
//
// Level codes (type 3, ANA). A layer quantized by ANA has weights eps_w · q_j with levels
// q_0 < ... < q_{L-1} (binary {-1, 1}, ternary {-1, 0, 1}, b-bit integers or custom; see
// inner/ana/ana.h) and one scale eps_w per layer. The code of a weight is its level index j
// (0 .. L-1), stored in the smallest b with 2^b >= L bits (binary 1 bit, ternary 2 bits), packed
// like pow2 codes. The levels and eps_w are in the header ("quantizers.weights"); codes >= L are
// invalid.
//
// Float32 records (type 2) hold everything that stays float: biases, BatchNorm
// running_mean / running_var / weight / bias, and the weights of layers INQ left float
// (inq.exclude). Names are the PyTorch parameter/buffer names of inner/network.h.
//
// Header JSON:
//   {"format": "qsched-export", "version": 1,
//    "network": {...},                  // the resolved spec (inner/network.h), all keys present
//    "input": {"channels": C, "height": H, "width": W},
//    "num_classes": K,
//    "normalize": {"mean": [C floats], "std": [C floats]},
//    "batchnorm_eps": 1e-5,
//    "source": {...},                   // informational: run, algorithm, bits, test_acc, data
//    "quantizers": {...}}               // version 2, ANA networks only (absent for INQ):
//
//   "quantizers": {
//     "weights": [{"record": "fc1.weight", "levels": [-1, 0, 1], "eps": 0.0123}, ...],
//         one per level-code record: weight = eps · levels[code]; eps is a double (the float32
//         weights are float(eps · q_j), up to one float rounding)
//     "activations": [{"index": 0, "levels": [-1, 0, 1], "thresholds": [-0.5, 0.5],
//                      "eps": 0.71}, ...]}
//         the hidden activation number `index` (forward order, inner/network.h: the ReLUs of
//         the network) is the hard ANA quantizer instead of a ReLU:
//           y = eps · q_j,  j = #{i : x >= eps · thresholds_i}
//         (levels strictly increasing, L = #levels >= 2, L - 1 thresholds strictly increasing,
//         eps > 0 finite). Activations not listed stay ReLU.
// Inputs: the network was trained on x' = (x - mean[c]) / std[c] with x the raw pixels in
// [0, 1] (uint8 / 255) and mean/std the per-channel statistics of the training split
// (identity when the run had data.normalize = false). A consumer applies this itself.
//
// Validation on read (every failure is an ExportError, one line naming the file): magic,
// version, truncation and trailing bytes, CRC, header JSON, record bounds, data_bytes vs dims,
// invalid codes, duplicate names, level-code records in a version-1 file. Whether the records
// match the architecture (names, shapes) and the "quantizers" section is well formed is checked
// by ReferenceNet (inner/export/reference.h).
#include <cstdint>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

namespace qsched::inner::xport {  // "export" is a C++ keyword

using json = nlohmann::json;

constexpr char kMagic[8] = {'Q', 'S', 'C', 'H', 'E', 'D', 'X', '1'};
constexpr uint32_t kFormatVersion = 2;     ///< what serialize() writes by default
constexpr uint32_t kMinFormatVersion = 1;  ///< oldest version parse() reads
constexpr size_t kPreambleBytes = 32;

/// Bad or corrupt export data. what() is one line; it names the file when one is involved.
class ExportError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class RecordType : uint8_t { kCodes = 1, kFloat32 = 2, kLevels = 3 };

/// One named tensor of the file.
struct Record {
  std::string name;
  RecordType type = RecordType::kFloat32;
  int bits = 32;               ///< codes: 2..8; levels: 1..8; float32: 32
  int32_t n1 = 0, n2 = 0;      ///< codes: codebook {0, ±2^n2 .. ±2^n1}; levels: n1 = L, n2 = 0
  std::vector<int64_t> dims;   ///< row-major shape
  std::vector<uint8_t> codes;  ///< kCodes / kLevels: one unpacked b-bit code per element
  std::vector<float> values;   ///< kFloat32: the values

  int64_t numel() const;
  /// Bytes of the packed data section (ceil(numel·bits/8) or 4·numel).
  uint64_t data_bytes() const;
};

/// The whole file: header JSON and records in file order.
struct ExportModel {
  uint32_t version = kFormatVersion;  ///< preamble version (the header's "version" must agree)
  json header;
  std::vector<Record> records;

  /// The record named `name`, or nullptr.
  const Record* find(const std::string& name) const;
};

// --- codes -----------------------------------------------------------------------------------

/// Code of the weight (-1)^neg · 2^k (k in [n2, n1]) for bit-width `bits`; zero -> 0.
uint8_t encode_level(bool negative, int64_t k, int64_t n2, int bits);
/// Code of a float weight that must be exactly 0 or ±2^k with n2 <= k <= n1; returns false
/// (and leaves `code` alone) when it is not on that codebook.
bool encode_weight(float w, int32_t n1, int32_t n2, int bits, uint8_t& code);
/// True when `code` is a valid b-bit code for a codebook with n1 - n2 + 1 exponents.
bool valid_code(uint8_t code, int32_t n1, int32_t n2, int bits);
/// Decoded code: sign (-1, 0, +1) and exponent k (meaningless when sign = 0).
struct Level {
  int sign = 0;
  int32_t exponent = 0;
};
Level decode_code(uint8_t code, int32_t n2, int bits);
/// The weight value of a valid code (exact: a power of two or zero).
float code_value(uint8_t code, int32_t n2, int bits);

/// Bits of a level code for L levels: the smallest b >= 1 with 2^b >= L.
int level_code_bits(int64_t levels);

/// LSB-first bit packing of b-bit codes (see the top of this file).
std::vector<uint8_t> pack_codes(const std::vector<uint8_t>& codes, int bits);
/// Inverse of pack_codes for `count` codes; `bytes` must hold ceil(count·bits/8) bytes.
std::vector<uint8_t> unpack_codes(const uint8_t* bytes, size_t count, int bits);

// --- files -----------------------------------------------------------------------------------

/// The file bytes of `m` (no validation beyond what is needed to write it).
std::string serialize(const ExportModel& m);
/// Parses and validates file bytes; `source` names the file in error messages.
ExportModel parse(const std::string& bytes, const std::string& source);
/// Reads and parses a file (missing/unreadable files are ExportErrors too).
ExportModel read_export_file(const std::string& path);

/// The inspection variant: the header plus every record with its integer data:
///   codes:   {"name", "type": "codes", "bits", "n1", "n2", "shape", "numel",
///             "codes": [b-bit codes, row-major], "exponents": [k, or null for a zero],
///             "signs": [-1 | 0 | 1]}
///   float32: {"name", "type": "float32", "shape", "numel", "values": [...]}
json to_inspection_json(const ExportModel& m);

}  // namespace qsched::inner::xport
