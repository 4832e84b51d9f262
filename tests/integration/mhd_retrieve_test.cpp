// ITI-68 Retrieve Document through the real server: raw bytes with the stored
// content type, FHIR when asked, ETag/Last-Modified, 304, Range (RFC 9110).
#include <rapidjson/document.h>

#include <catch2/catch.hpp>
#include <string>

#include "http_client.h"
#include "json_checks.h"
#include "mhd_support.h"
#include "server_process.h"

using espace::testing::HttpClient;
using espace::testing::HttpResponse;
using espace::testing::json_of;
using espace::testing::ServerProcess;
using espace::testing::str;
using namespace mhd_test;

namespace {

// Submits one document and returns "Binary/<id>".
std::string submit_binary(HttpClient& c, const std::string& uid, const std::string& content,
                          const std::string& content_type) {
  Submission s;
  s.unique_id = "1.2.250.1.999.70." + uid;
  Document d;
  d.unique_id = "1.2.250.1.999.80." + uid;
  d.content = content;
  d.content_type = content_type;
  s.documents.push_back(d);
  HttpResponse r = post_bundle(c, provide_bundle(s));
  INFO(r.body.substr(0, 1000));
  REQUIRE(r.status == 200);
  auto j = json_of(r);
  return target_of(str(j["entry"][2]["response"], "location"), "Binary");
}

}  // namespace

TEST_CASE("ITI-68 returns the document, FHIR only when asked", "[mhd]") {
  ServerProcess server;
  HttpClient c("127.0.0.1", server.port());
  load_fixtures(c);
  std::string pdf = "%PDF-1.4\n% synthetic\n" + std::string(300, 'p') + "\n%%EOF\n";
  std::string binary = submit_binary(c, "1", pdf, "application/pdf");

  HttpResponse raw = c.get("/" + binary, {{"Accept", "application/pdf"}});
  CHECK(raw.status == 200);
  CHECK(raw.header("Content-Type") == "application/pdf");
  CHECK(raw.body == pdf);
  CHECK(raw.header("ETag") == "W/\"1\"");
  CHECK_FALSE(raw.header("Last-Modified").empty());
  CHECK(raw.header("Accept-Ranges") == "bytes");
  CHECK(c.get("/" + binary, {{"Accept", "*/*"}}).body == pdf);
  CHECK(c.get("/" + binary, {{"Accept", "application/*;q=0.5"}}).body == pdf);
  CHECK(c.get("/" + binary).body == pdf);  // no Accept: the document itself

  HttpResponse fhir = c.get("/" + binary, {{"Accept", "application/fhir+json"}});
  CHECK(fhir.status == 200);
  CHECK(fhir.header("Content-Type").rfind("application/fhir+json", 0) == 0);
  auto j = json_of(fhir);
  CHECK(str(j, "resourceType") == "Binary");
  CHECK(str(j, "contentType") == "application/pdf");
  CHECK(str(j, "data") == base64(pdf));
  HttpResponse xml = c.get("/" + binary + "?_format=xml");
  CHECK(xml.header("Content-Type").rfind("application/fhir+xml", 0) == 0);
  CHECK(xml.body.find("<Binary") != std::string::npos);

  HttpResponse refused = c.get("/" + binary, {{"Accept", "image/png"}});
  CHECK(refused.status == 406);
  CHECK(refused.body.find("application/pdf") != std::string::npos);

  HttpResponse cached = c.get("/" + binary, {{"Accept", "application/pdf"}, {"If-None-Match", raw.header("ETag")}});
  CHECK(cached.status == 304);
  CHECK(cached.body.empty());
  CHECK(c.get("/Binary/no-such-binary", {{"Accept", "application/pdf"}}).status == 404);
}

TEST_CASE("ITI-68 byte ranges", "[mhd]") {
  ServerProcess server;
  HttpClient c("127.0.0.1", server.port());
  load_fixtures(c);
  std::string content;
  for (int i = 0; i < 1000; ++i) content += static_cast<char>('a' + i % 26);
  std::string binary = submit_binary(c, "2", content, "text/plain");
  auto get_range = [&](const std::string& range) {
    return c.get("/" + binary, {{"Accept", "text/plain"}, {"Range", range}});
  };

  HttpResponse mid = get_range("bytes=10-19");
  CHECK(mid.status == 206);
  CHECK(mid.body == content.substr(10, 10));
  CHECK(mid.header("Content-Range") == "bytes 10-19/1000");
  CHECK(mid.header("Content-Type") == "text/plain");

  HttpResponse open_end = get_range("bytes=990-");
  CHECK(open_end.status == 206);
  CHECK(open_end.body == content.substr(990));
  CHECK(open_end.header("Content-Range") == "bytes 990-999/1000");

  HttpResponse suffix = get_range("bytes=-5");
  CHECK(suffix.status == 206);
  CHECK(suffix.body == content.substr(995));

  HttpResponse clipped = get_range("bytes=995-5000");
  CHECK(clipped.status == 206);
  CHECK(clipped.header("Content-Range") == "bytes 995-999/1000");

  HttpResponse beyond = get_range("bytes=1000-1010");
  CHECK(beyond.status == 416);
  CHECK(beyond.header("Content-Range") == "bytes */1000");

  // Several ranges and malformed ones: the whole document (a server may ignore Range).
  CHECK(get_range("bytes=0-1,5-6").status == 200);
  CHECK(get_range("bytes=9-3").status == 200);
  CHECK(get_range("pages=1-2").body == content);

  // If-Range with our (weak) ETag never matches: the whole document.
  HttpResponse if_range = c.get("/" + binary, {{"Accept", "text/plain"}, {"Range", "bytes=0-9"}, {"If-Range", "W/\"1\""}});
  CHECK(if_range.status == 200);
  CHECK(if_range.body.size() == 1000);
}

TEST_CASE("a 50 MB document is provided and retrieved", "[mhd][large]") {
  ServerProcess server;
  HttpClient c("127.0.0.1", server.port());
  load_fixtures(c);
  std::string big(50 * 1000 * 1000, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 7919) >> 3);
  std::string binary = submit_binary(c, "3", big, "application/dicom");
  HttpResponse whole = c.get("/" + binary, {{"Accept", "application/dicom"}});
  CHECK(whole.status == 200);
  CHECK(whole.body.size() == big.size());
  CHECK(whole.body == big);
  HttpResponse tail = c.get("/" + binary, {{"Accept", "*/*"}, {"Range", "bytes=-1000"}});
  CHECK(tail.status == 206);
  CHECK(tail.body == big.substr(big.size() - 1000));
}
