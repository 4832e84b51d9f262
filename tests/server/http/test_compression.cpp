#include <catch2/catch.hpp>

#include <random>

#include "espace/http/compression.h"

using espace::fhir::ErrorCategory;
using namespace espace::http;

namespace {

std::string sample_json(size_t approx_size) {
  std::string s = "{\"resourceType\":\"Bundle\",\"entry\":[";
  for (int i = 0; s.size() < approx_size; ++i) {
    s += "{\"resource\":{\"resourceType\":\"Patient\",\"id\":\"p" + std::to_string(i) + "\"}},";
  }
  s += "{}]}";
  return s;
}

}  // namespace

TEST_CASE("gzip round trip", "[compression]") {
  for (size_t size : {size_t(0), size_t(1), size_t(1000), size_t(200000)}) {
    std::string data = sample_json(size);
    std::string packed = gzip_compress(data);
    REQUIRE_FALSE(packed.empty());
    CHECK(static_cast<unsigned char>(packed[0]) == 0x1f);  // gzip magic
    CHECK(static_cast<unsigned char>(packed[1]) == 0x8b);
    std::string unpacked;
    REQUIRE(gzip_decompress(packed, data.size(), &unpacked));
    CHECK(unpacked == data);
  }
}

TEST_CASE("random bytes survive a round trip", "[compression]") {
  std::mt19937 rng(7);
  std::string data(50000, '\0');
  for (char& c : data) c = static_cast<char>(rng());
  std::string out;
  REQUIRE(gzip_decompress(gzip_compress(data), 1 << 20, &out));
  CHECK(out == data);
}

TEST_CASE("concatenated gzip members decode as one body", "[compression]") {
  std::string out;
  REQUIRE(gzip_decompress(gzip_compress("hello ") + gzip_compress("world"), 100, &out));
  CHECK(out == "hello world");
}

TEST_CASE("a gzip bomb is stopped at the limit", "[compression]") {
  std::string zeros(64u << 20, '\0');  // 64 MiB of zeros packs to ~64 KiB
  std::string bomb = gzip_compress(zeros);
  REQUIRE(bomb.size() < 200000);
  std::string out;
  espace::fhir::Status st = gzip_decompress(bomb, 1u << 20, &out);
  CHECK(st.category() == ErrorCategory::TooLarge);
  CHECK(out.empty());
}

TEST_CASE("corrupt or truncated gzip is invalid", "[compression]") {
  std::string packed = gzip_compress(sample_json(5000));
  std::string out;
  CHECK(gzip_decompress("not gzip at all", 1000, &out).category() == ErrorCategory::Invalid);
  CHECK(gzip_decompress("", 1000, &out).category() == ErrorCategory::Invalid);
  CHECK(gzip_decompress(packed.substr(0, packed.size() / 2), 100000, &out).category() == ErrorCategory::Invalid);
  std::string flipped = packed;
  flipped[flipped.size() / 2] = static_cast<char>(flipped[flipped.size() / 2] ^ 0x55);
  CHECK(gzip_decompress(flipped, 100000, &out).category() == ErrorCategory::Invalid);
  CHECK(gzip_decompress(packed + "trailing", 100000, &out).category() == ErrorCategory::Invalid);
}

TEST_CASE("Accept-Encoding parsing", "[compression]") {
  CHECK(accepts_gzip("gzip"));
  CHECK(accepts_gzip("gzip, deflate, br"));
  CHECK(accepts_gzip("deflate, GZIP;q=0.5"));
  CHECK(accepts_gzip("*"));
  CHECK(accepts_gzip("x-gzip"));
  CHECK_FALSE(accepts_gzip(""));
  CHECK_FALSE(accepts_gzip("identity"));
  CHECK_FALSE(accepts_gzip("deflate, br"));
  CHECK_FALSE(accepts_gzip("gzip;q=0"));
  CHECK_FALSE(accepts_gzip("gzip;q=0.0, *"));
  CHECK_FALSE(accepts_gzip("*;q=0"));
}

TEST_CASE("compress_response only compresses large bodies for willing clients", "[compression]") {
  Request req;
  req.headers.add("Accept-Encoding", "gzip, deflate");
  Response small;
  small.body = std::string(kMinCompressBytes, 'a');
  compress_response(req, &small);
  CHECK(small.headers.find("Content-Encoding") == nullptr);
  CHECK(small.body == std::string(kMinCompressBytes, 'a'));

  Response large;
  large.body = sample_json(10000);
  const std::string original = large.body;
  compress_response(req, &large);
  CHECK(large.headers.get("Content-Encoding") == "gzip");
  CHECK(large.headers.get("Vary") == "Accept-Encoding");
  CHECK(large.body.size() < original.size());
  std::string out;
  REQUIRE(gzip_decompress(large.body, 1 << 20, &out));
  CHECK(out == original);

  Request plain;
  Response large2;
  large2.body = original;
  large2.headers.set("Vary", "Origin");
  compress_response(plain, &large2);
  CHECK(large2.headers.find("Content-Encoding") == nullptr);
  CHECK(large2.body == original);
  CHECK(large2.headers.get("Vary") == "Origin, Accept-Encoding");
}

TEST_CASE("decode_request_body handles Content-Encoding", "[compression]") {
  const std::string json = sample_json(3000);
  Request req;
  req.headers.add("Content-Encoding", "gzip");
  req.body = gzip_compress(json);
  REQUIRE(decode_request_body(&req, 1 << 20));
  CHECK(req.body == json);
  CHECK(req.headers.find("Content-Encoding") == nullptr);

  Request identity;
  identity.headers.add("Content-Encoding", "identity");
  identity.body = json;
  REQUIRE(decode_request_body(&identity, 10));  // no decoding: the limit applies to inflation only
  CHECK(identity.body == json);

  Request none;
  none.body = json;
  REQUIRE(decode_request_body(&none, 1 << 20));
  CHECK(none.body == json);

  Request br;
  br.headers.add("Content-Encoding", "br");
  br.body = "x";
  CHECK(decode_request_body(&br, 100).category() == ErrorCategory::UnsupportedMedia);

  Request bomb;
  bomb.headers.add("Content-Encoding", "gzip");
  bomb.body = gzip_compress(std::string(1u << 20, ' '));
  CHECK(decode_request_body(&bomb, 4096).category() == ErrorCategory::TooLarge);

  Request corrupt;
  corrupt.headers.add("Content-Encoding", "gzip");
  corrupt.body = "\x1f\x8b garbage";
  CHECK(decode_request_body(&corrupt, 4096).category() == ErrorCategory::Invalid);
}
