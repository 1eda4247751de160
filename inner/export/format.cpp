// The .qsx reader/writer. No torch here (see format.h): std, nlohmann::json, zlib only.
#include "inner/export/format.h"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "inner/base/json_text.h"

namespace qsched::inner::xport {

namespace {

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw ExportError("export file '" + source + "': " + what);
}

std::string dims_str(const std::vector<int64_t>& d) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < d.size(); ++i) s << (i ? ", " : "") << d[i];
  s << "]";
  return s.str();
}

void put_u8(std::string& s, uint8_t v) { s.push_back(static_cast<char>(v)); }
void put_u16(std::string& s, uint16_t v) {
  for (int i = 0; i < 2; ++i) put_u8(s, static_cast<uint8_t>(v >> (8 * i)));
}
void put_u32(std::string& s, uint32_t v) {
  for (int i = 0; i < 4; ++i) put_u8(s, static_cast<uint8_t>(v >> (8 * i)));
}
void put_u64(std::string& s, uint64_t v) {
  for (int i = 0; i < 8; ++i) put_u8(s, static_cast<uint8_t>(v >> (8 * i)));
}

uint64_t get_le(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

uint32_t crc_of(const uint8_t* p, size_t n) {
  uLong crc = crc32(0L, Z_NULL, 0);
  // zlib's crc32 takes uInt lengths: feed large buffers in chunks.
  while (n > 0) {
    const uInt chunk = static_cast<uInt>(std::min<size_t>(n, 1u << 30));
    crc = crc32(crc, p, chunk);
    p += chunk;
    n -= chunk;
  }
  return static_cast<uint32_t>(crc);
}

/// Bounds-checked reader over the payload.
class Cursor {
 public:
  Cursor(const uint8_t* p, size_t n, const std::string& source) : p_(p), n_(n), src_(source) {}
  const uint8_t* take(size_t k, const std::string& what) {
    if (k > n_ - pos_) {
      fail(src_, "inconsistent sizes: " + what + " needs " + std::to_string(k) +
                     " bytes at payload offset " + std::to_string(pos_) + ", only " +
                     std::to_string(n_ - pos_) + " remain");
    }
    const uint8_t* r = p_ + pos_;
    pos_ += k;
    return r;
  }
  uint64_t uint(int bytes, const std::string& what) { return get_le(take(bytes, what), bytes); }
  size_t remaining() const { return n_ - pos_; }

 private:
  const uint8_t* p_;
  size_t n_, pos_ = 0;
  std::string src_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Records

int64_t Record::numel() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

uint64_t Record::data_bytes() const {
  const auto n = static_cast<uint64_t>(numel());
  return type == RecordType::kFloat32 ? 4 * n : (n * static_cast<uint64_t>(bits) + 7) / 8;
}

const Record* ExportModel::find(const std::string& name) const {
  for (const auto& r : records)
    if (r.name == name) return &r;
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// Codes

uint8_t encode_level(bool negative, int64_t k, int64_t n2, int bits) {
  const auto e = static_cast<uint8_t>(k - n2 + 1);
  return static_cast<uint8_t>((negative ? 1u << (bits - 1) : 0u) | e);
}

bool encode_weight(float w, int32_t n1, int32_t n2, int bits, uint8_t& code) {
  if (w == 0.0f) {
    code = 0;
    return true;
  }
  if (!std::isfinite(w)) return false;
  int e = 0;
  const float m = std::frexp(std::fabs(w), &e);  // |w| = m·2^e, m in [0.5, 1)
  if (m != 0.5f) return false;                   // not a power of two
  const int32_t k = e - 1;
  if (k < n2 || k > n1) return false;
  code = encode_level(w < 0, k, n2, bits);
  return true;
}

bool valid_code(uint8_t code, int32_t n1, int32_t n2, int bits) {
  if (bits < 2 || bits > 8 || (bits < 8 && code >> bits)) return false;
  const unsigned sign = code >> (bits - 1);
  const unsigned e = code & ((1u << (bits - 1)) - 1);
  if (e == 0) return sign == 0;  // "-0" is not a code
  return static_cast<int64_t>(e) <= static_cast<int64_t>(n1) - n2 + 1;
}

Level decode_code(uint8_t code, int32_t n2, int bits) {
  const unsigned e = code & ((1u << (bits - 1)) - 1);
  Level l;
  if (e == 0) return l;
  l.sign = (code >> (bits - 1)) ? -1 : 1;
  l.exponent = n2 + static_cast<int32_t>(e) - 1;
  return l;
}

float code_value(uint8_t code, int32_t n2, int bits) {
  const Level l = decode_code(code, n2, bits);
  return l.sign == 0 ? 0.0f : static_cast<float>(l.sign) * std::ldexp(1.0f, l.exponent);
}

int level_code_bits(int64_t levels) {
  int b = 1;
  while ((int64_t{1} << b) < levels) ++b;
  return b;
}

std::vector<uint8_t> pack_codes(const std::vector<uint8_t>& codes, int bits) {
  std::vector<uint8_t> out((codes.size() * static_cast<size_t>(bits) + 7) / 8, 0);
  size_t bit = 0;
  for (uint8_t c : codes) {
    for (int j = 0; j < bits; ++j, ++bit) {
      if ((c >> j) & 1u) out[bit / 8] |= static_cast<uint8_t>(1u << (bit % 8));
    }
  }
  return out;
}

std::vector<uint8_t> unpack_codes(const uint8_t* bytes, size_t count, int bits) {
  std::vector<uint8_t> out(count, 0);
  size_t bit = 0;
  for (size_t i = 0; i < count; ++i) {
    unsigned c = 0;
    for (int j = 0; j < bits; ++j, ++bit) c |= ((bytes[bit / 8] >> (bit % 8)) & 1u) << j;
    out[i] = static_cast<uint8_t>(c);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Files

std::string serialize(const ExportModel& m) {
  std::string payload = m.header.dump();
  const auto header_bytes = static_cast<uint32_t>(payload.size());
  for (const auto& r : m.records) {
    if (r.name.size() > 0xffff) throw ExportError("export: record name too long: " + r.name);
    put_u16(payload, static_cast<uint16_t>(r.name.size()));
    payload += r.name;
    put_u8(payload, static_cast<uint8_t>(r.type));
    put_u8(payload, static_cast<uint8_t>(r.bits));
    put_u8(payload, static_cast<uint8_t>(r.dims.size()));
    put_u8(payload, 0);
    put_u32(payload, static_cast<uint32_t>(r.n1));
    put_u32(payload, static_cast<uint32_t>(r.n2));
    for (int64_t d : r.dims) put_u32(payload, static_cast<uint32_t>(d));
    if (r.type != RecordType::kFloat32) {
      const auto packed = pack_codes(r.codes, r.bits);
      put_u64(payload, packed.size());
      payload.append(reinterpret_cast<const char*>(packed.data()), packed.size());
    } else {
      put_u64(payload, 4 * r.values.size());
      for (float v : r.values) {
        uint32_t u;
        std::memcpy(&u, &v, 4);
        put_u32(payload, u);
      }
    }
  }
  std::string out(kMagic, kMagic + 8);
  put_u32(out, m.version);
  put_u32(out, header_bytes);
  put_u64(out, payload.size());
  put_u32(out, crc_of(reinterpret_cast<const uint8_t*>(payload.data()), payload.size()));
  put_u32(out, static_cast<uint32_t>(m.records.size()));
  return out + payload;
}

ExportModel parse(const std::string& bytes, const std::string& src) {
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  const size_t size = bytes.size();
  const bool magic_prefix = std::memcmp(p, kMagic, std::min<size_t>(size, 8)) == 0;
  if (!magic_prefix) fail(src, "bad magic (not a qsched export file; expected \"QSCHEDX1\")");
  if (size < kPreambleBytes) {
    fail(src, "truncated: " + std::to_string(size) + " bytes, shorter than the " +
                  std::to_string(kPreambleBytes) + "-byte preamble");
  }
  const auto version = static_cast<uint32_t>(get_le(p + 8, 4));
  if (version < kMinFormatVersion || version > kFormatVersion) {
    fail(src, "format version " + std::to_string(version) + ", this qsched reads versions " +
                  std::to_string(kMinFormatVersion) + ".." + std::to_string(kFormatVersion));
  }
  const uint64_t header_bytes = get_le(p + 12, 4);
  const uint64_t payload_bytes = get_le(p + 16, 8);
  const auto stored_crc = static_cast<uint32_t>(get_le(p + 24, 4));
  const uint64_t record_count = get_le(p + 28, 4);
  const uint64_t have = size - kPreambleBytes;
  if (have < payload_bytes) {
    fail(src, "truncated: " + std::to_string(size) + " bytes, the preamble announces " +
                  std::to_string(kPreambleBytes + payload_bytes));
  }
  if (have > payload_bytes) {
    fail(src, "inconsistent sizes: " + std::to_string(have - payload_bytes) +
                  " trailing bytes after the announced " + std::to_string(payload_bytes) +
                  "-byte payload");
  }
  const uint8_t* payload = p + kPreambleBytes;
  const uint32_t crc = crc_of(payload, payload_bytes);
  if (crc != stored_crc) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "CRC mismatch (stored %08x, computed %08x): the file is corrupt",
                  stored_crc, crc);
    fail(src, buf);
  }
  if (header_bytes > payload_bytes) {
    fail(src, "inconsistent sizes: header of " + std::to_string(header_bytes) +
                  " bytes in a payload of " + std::to_string(payload_bytes));
  }

  ExportModel m;
  m.version = version;
  std::string json_error;
  if (!parse_json_strict(std::string_view(reinterpret_cast<const char*>(payload), header_bytes),
                         m.header, json_error)) {
    fail(src, "the header is not valid JSON (" + json_error + ")");
  }
  if (!m.header.is_object() || m.header.value("format", json()) != "qsched-export") {
    fail(src, "the header is not a qsched export header (\"format\": \"qsched-export\" missing)");
  }
  if (m.header.value("version", json()) != version) {
    fail(src, "header version " + m.header.value("version", json()).dump() +
                  " disagrees with the preamble version " + std::to_string(version));
  }

  Cursor c(payload + header_bytes, payload_bytes - header_bytes, src);
  std::set<std::string> names;
  for (uint64_t i = 0; i < record_count; ++i) {
    const std::string at = "record " + std::to_string(i);
    Record r;
    const auto name_bytes = static_cast<size_t>(c.uint(2, at + " name length"));
    const uint8_t* name = c.take(name_bytes, at + " name");
    r.name.assign(reinterpret_cast<const char*>(name), name_bytes);
    const std::string what = at + " ('" + r.name + "')";
    if (!names.insert(r.name).second) fail(src, what + ": duplicate name");
    const auto type = static_cast<unsigned>(c.uint(1, what + " type"));
    r.bits = static_cast<int>(c.uint(1, what + " bits"));
    const auto ndim = static_cast<size_t>(c.uint(1, what + " ndim"));
    c.uint(1, what + " reserved byte");
    r.n1 = static_cast<int32_t>(static_cast<uint32_t>(c.uint(4, what + " n1")));
    r.n2 = static_cast<int32_t>(static_cast<uint32_t>(c.uint(4, what + " n2")));
    if (type == 1) {
      r.type = RecordType::kCodes;
      if (r.bits < 2 || r.bits > 8) {
        fail(src, what + ": codes of " + std::to_string(r.bits) + " bits; valid are 2..8");
      }
      const int64_t exponents = int64_t{1} << (r.bits - 2);
      if (static_cast<int64_t>(r.n1) - r.n2 + 1 != exponents) {
        fail(src, what + ": inconsistent codebook: n1 = " + std::to_string(r.n1) +
                      ", n2 = " + std::to_string(r.n2) + " but " + std::to_string(r.bits) +
                      " bits have " + std::to_string(exponents) + " exponents");
      }
    } else if (type == 3) {
      r.type = RecordType::kLevels;
      if (version < 2) fail(src, what + ": level codes (type 3) need format version >= 2");
      if (r.bits < 1 || r.bits > 8) {
        fail(src, what + ": level codes of " + std::to_string(r.bits) + " bits; valid are 1..8");
      }
      if (r.n1 < 2 || r.n1 > (1 << r.bits) || r.n2 != 0) {
        fail(src, what + ": inconsistent level count: n1 = " + std::to_string(r.n1) +
                      ", n2 = " + std::to_string(r.n2) +
                      " (valid: 2 <= n1 <= 2^bits = " + std::to_string(1 << r.bits) + ", n2 = 0)");
      }
    } else if (type == 2) {
      r.type = RecordType::kFloat32;
      if (r.bits != 32) fail(src, what + ": float32 record with bits = " + std::to_string(r.bits));
    } else {
      fail(src, what + ": unknown record type " + std::to_string(type));
    }
    if (ndim < 1 || ndim > 4) fail(src, what + ": ndim = " + std::to_string(ndim) + ", valid 1..4");
    uint64_t numel = 1;
    for (size_t d = 0; d < ndim; ++d) {
      const auto v = static_cast<int64_t>(c.uint(4, what + " dims"));
      if (v < 1) fail(src, what + ": dimension " + std::to_string(d) + " is 0");
      r.dims.push_back(v);
      if (__builtin_mul_overflow(numel, static_cast<uint64_t>(v), &numel) ||
          numel > 8 * static_cast<uint64_t>(payload_bytes)) {
        fail(src, "inconsistent sizes: " + what + " has more elements than the file has bits");
      }
    }
    const uint64_t data_bytes = c.uint(8, what + " data size");
    if (data_bytes != r.data_bytes()) {
      fail(src, "inconsistent sizes: " + what + " has shape " + dims_str(r.dims) + " at " +
                    std::to_string(r.bits) + " bits, i.e. " + std::to_string(r.data_bytes()) +
                    " data bytes, but declares " + std::to_string(data_bytes));
    }
    const uint8_t* data = c.take(data_bytes, what + " data");
    if (r.type != RecordType::kFloat32) {
      r.codes = unpack_codes(data, numel, r.bits);
      for (size_t j = 0; j < r.codes.size(); ++j) {
        const bool ok = r.type == RecordType::kCodes ? valid_code(r.codes[j], r.n1, r.n2, r.bits)
                                                     : r.codes[j] < r.n1;
        if (!ok) {
          fail(src, what + ": element " + std::to_string(j) + " has invalid code " +
                        std::to_string(r.codes[j]) + " for " + std::to_string(r.bits) + " bits");
        }
      }
      // Padding bits of the last byte must be zero (a cheap extra consistency check).
      const uint64_t used = numel * static_cast<uint64_t>(r.bits);
      if (used % 8 != 0 && (data[data_bytes - 1] >> (used % 8)) != 0) {
        fail(src, what + ": nonzero padding bits after the last code");
      }
    } else {
      r.values.resize(numel);
      for (uint64_t j = 0; j < numel; ++j) {
        const auto u = static_cast<uint32_t>(get_le(data + 4 * j, 4));
        std::memcpy(&r.values[j], &u, 4);
      }
    }
    m.records.push_back(std::move(r));
  }
  if (c.remaining() != 0) {
    fail(src, "inconsistent sizes: " + std::to_string(c.remaining()) + " bytes after the last of " +
                  std::to_string(record_count) + " records");
  }
  return m;
}

ExportModel read_export_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw ExportError("export file '" + path + "': cannot be opened (missing or unreadable)");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw ExportError("export file '" + path + "': read error");
  return parse(ss.str(), path);
}

json to_inspection_json(const ExportModel& m) {
  json out = m.header;
  json recs = json::array();
  for (const auto& r : m.records) {
    json j = {{"name", r.name}, {"shape", r.dims}, {"numel", r.numel()}};
    if (r.type == RecordType::kCodes) {
      j["type"] = "codes";
      j["bits"] = r.bits;
      j["n1"] = r.n1;
      j["n2"] = r.n2;
      json codes = json::array(), exps = json::array(), signs = json::array();
      for (uint8_t code : r.codes) {
        const Level l = decode_code(code, r.n2, r.bits);
        codes.push_back(code);
        exps.push_back(l.sign == 0 ? json() : json(l.exponent));
        signs.push_back(l.sign);
      }
      j["codes"] = std::move(codes);
      j["exponents"] = std::move(exps);
      j["signs"] = std::move(signs);
    } else if (r.type == RecordType::kLevels) {
      j["type"] = "levels";
      j["bits"] = r.bits;
      j["n_levels"] = r.n1;
      j["codes"] = r.codes;  // level indices; the values are in header.quantizers.weights
    } else {
      j["type"] = "float32";
      j["values"] = r.values;
    }
    recs.push_back(std::move(j));
  }
  out["records"] = std::move(recs);
  return out;
}

}  // namespace qsched::inner::xport
