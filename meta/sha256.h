#pragma once
// SHA-256 (FIPS 180-4) and HMAC-SHA-256 (RFC 2104), for the distributed store's token
// handshake (meta/store.h): the shared secret never crosses the network, only HMACs of fresh
// random nonces. Checked against the FIPS 180-4 examples and the RFC 4231 test vectors
// (tests/meta/test_store.cpp). Not a general crypto library: no streaming, inputs in memory.
#include <array>
#include <cstdint>
#include <string>

namespace qsched::meta {

using Digest = std::array<uint8_t, 32>;

/// SHA-256 of `data`.
Digest sha256(const std::string& data);
/// HMAC-SHA-256 of `message` under `key` (any length; keys longer than 64 bytes are hashed).
Digest hmac_sha256(const std::string& key, const std::string& message);
/// Equal in time independent of where they differ (no early exit on the first difference).
bool digest_equal(const Digest& a, const Digest& b);
/// Lower-case hex of `d`.
std::string to_hex(const Digest& d);

/// `n` bytes from the kernel's random generator (getrandom); throws c10::Error if it fails.
std::string random_bytes(size_t n);
/// 128 random bits as 32 lower-case hex characters (a QSCHED_DIST_TOKEN).
std::string random_token();

}  // namespace qsched::meta
