// ITI-65 Provide Document Bundle end to end through the real server
// (profiles.ihe.net/ITI/MHD/ITI-65.html).
#include <rapidjson/document.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <string>
#include <thread>

#include "http_client.h"
#include "json_checks.h"
#include "mhd_support.h"
#include "server_process.h"

using espace::testing::history_total;
using espace::testing::HttpClient;
using espace::testing::HttpResponse;
using espace::testing::json_of;
using espace::testing::ServerProcess;
using espace::testing::str;
using namespace mhd_test;

namespace {

Submission one_document(const std::string& ss_uid, const std::string& doc_uid) {
  Submission s;
  s.unique_id = ss_uid;
  Document d;
  d.unique_id = doc_uid;
  s.documents.push_back(d);
  return s;
}

std::string outcome_text(const HttpResponse& r) { return r.body; }

}  // namespace

TEST_CASE("ITI-65 stores the submission atomically and answers with locations", "[mhd]") {
  ServerProcess server;
  HttpClient c("127.0.0.1", server.port());
  load_fixtures(c);
  Submission s = one_document("1.2.250.1.999.10.1", "1.2.250.1.999.20.1");
  // The size and SHA-1 (base64) of the synthetic report, computed independently (sha1sum).
  s.documents[0].size = "34";
  s.documents[0].hash = "UJB34H4QKUJofAnWinwCn21Idys=";
  HttpResponse r = post_bundle(c, provide_bundle(s));
  INFO(r.body);
  REQUIRE(r.status == 200);
  auto d = json_of(r);
  CHECK(str(d, "type") == "transaction-response");
  REQUIRE(d["entry"].Size() == 3);
  for (auto& e : d["entry"].GetArray()) CHECK(str(e["response"], "status").rfind("201", 0) == 0);
  std::string list = target_of(str(d["entry"][0]["response"], "location"), "List");
  std::string doc = target_of(str(d["entry"][1]["response"], "location"), "DocumentReference");
  std::string binary = target_of(str(d["entry"][2]["response"], "location"), "Binary");

  // References inside the bundle now point at the stored resources.
  auto stored_list = json_of(c.get("/" + list));
  CHECK(str(stored_list["entry"][0]["item"], "reference") == doc);
  auto stored_doc = json_of(c.get("/" + doc));
  CHECK(str(stored_doc["content"][0]["attachment"], "url") == binary);
  CHECK(str(stored_doc, "status") == "current");

  HttpResponse raw = c.get("/" + binary, {{"Accept", "text/plain"}});
  CHECK(raw.status == 200);
  CHECK(raw.body == "Compte rendu synthetique de test.\n");
}

TEST_CASE("ITI-65 refuses inconsistent submissions with 4xx naming the entry, storing nothing", "[mhd]") {
  ServerProcess server;
  HttpClient c("127.0.0.1", server.port());
  load_fixtures(c);
  const int64_t before = history_total(c);

  SECTION("wrong attachment size") {
    Submission s = one_document("1.2.250.1.999.11.1", "1.2.250.1.999.21.1");
    s.documents[0].size = "35";
    HttpResponse r = post_bundle(c, provide_bundle(s));
    CHECK(r.status == 422);
    CHECK(outcome_text(r).find("attachment.size is 35 but the document has 34 bytes") != std::string::npos);
    CHECK(outcome_text(r).find("Bundle.entry[1].resource.content[0].attachment.size") != std::string::npos);
  }
  SECTION("wrong hash") {
    Submission s = one_document("1.2.250.1.999.11.2", "1.2.250.1.999.21.2");
    s.documents[0].hash = "AAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    HttpResponse r = post_bundle(c, provide_bundle(s));
    CHECK(r.status == 422);
    CHECK(outcome_text(r).find("is not the SHA-1 of the document") != std::string::npos);
  }
  SECTION("attachment url outside the bundle") {
    Submission s = one_document("1.2.250.1.999.11.3", "1.2.250.1.999.21.3");
    s.documents[0].attachment_url = "urn:uuid:99999999-0000-4000-8000-000000000000";
    HttpResponse r = post_bundle(c, provide_bundle(s));
    CHECK(r.status == 422);
    CHECK(outcome_text(r).find("is not the fullUrl of a Binary in the bundle") != std::string::npos);
  }
  SECTION("DocumentReference not in the SubmissionSet") {
    Submission s = one_document("1.2.250.1.999.11.4", "1.2.250.1.999.21.4");
    s.list_lists_documents = false;
    HttpResponse r = post_bundle(c, provide_bundle(s));
    CHECK(r.status == 422);
    CHECK(outcome_text(r).find("is not an entry of the SubmissionSet") != std::string::npos);
  }
  SECTION("subjects differ") {
    Submission s = one_document("1.2.250.1.999.11.5", "1.2.250.1.999.21.5");
    s.documents[0].subject = "Patient/mhd-qualified-2";
    HttpResponse r = post_bundle(c, provide_bundle(s));
    CHECK(r.status == 422);
    CHECK(outcome_text(r).find("differs from the SubmissionSet's") != std::string::npos);
  }
  SECTION("unknown patient") {
    Submission s = one_document("1.2.250.1.999.11.8", "1.2.250.1.999.21.8");
    s.patient = "Patient/nobody-here";
    HttpResponse r = post_bundle(c, provide_bundle(s));
    CHECK(r.status == 422);
    CHECK(outcome_text(r).find("is not a Patient of this server") != std::string::npos);
  }
  SECTION("two documents with the same uniqueId") {
    Submission s = one_document("1.2.250.1.999.11.9", "1.2.250.1.999.21.9");
    s.documents.push_back(s.documents[0]);
    HttpResponse r = post_bundle(c, provide_bundle(s));
    CHECK(r.status == 422);
    CHECK(outcome_text(r).find("appears twice in the submission") != std::string::npos);
  }
  SECTION("document larger than the limit") {
    // The server below accepts documents of at most 1 KiB.
    ServerProcess small({"--max-document-bytes", "1024"});
    HttpClient c2("127.0.0.1", small.port());
    load_fixtures(c2);
    Submission s = one_document("1.2.250.1.999.11.10", "1.2.250.1.999.21.10");
    s.documents[0].content = std::string(2000, 'x');
    HttpResponse r = post_bundle(c2, provide_bundle(s));
    CHECK(r.status == 413);
    CHECK(outcome_text(r).find("the document has 2000 bytes; this server accepts at most 1024") != std::string::npos);
  }
  CHECK(history_total(c) == before);
}

TEST_CASE("ITI-65 files documents only for a qualified INS identity", "[mhd]") {
  // Our fr-patient-ins profile already refuses to store an INS without QUAL;
  // with --relaxed-profiles such patients exist and the ITI-65 check stands alone.
  ServerProcess server({"--relaxed-profiles"});
  HttpClient c("127.0.0.1", server.port());
  load_fixtures(c, /*relaxed=*/true);
  const int64_t before = history_total(c);
  Submission provisional = one_document("1.2.250.1.999.15.1", "1.2.250.1.999.25.1");
  provisional.patient = "Patient/mhd-provisional";
  HttpResponse r = post_bundle(c, provide_bundle(provisional));
  CHECK(r.status == 422);
  CHECK(r.body.find("Patient/mhd-provisional's identity is not qualified (identity reliability status 'PROV'") !=
        std::string::npos);
  Submission no_ins = one_document("1.2.250.1.999.15.2", "1.2.250.1.999.25.2");
  no_ins.patient = "Patient/mhd-no-ins";
  r = post_bundle(c, provide_bundle(no_ins));
  CHECK(r.status == 422);
  CHECK(r.body.find("Patient/mhd-no-ins has no INS identifier") != std::string::npos);
  CHECK(history_total(c) == before);
  Submission qualified = one_document("1.2.250.1.999.15.3", "1.2.250.1.999.25.3");
  CHECK(post_bundle(c, provide_bundle(qualified)).status == 200);
}

TEST_CASE("ITI-65 inline attachment data is checked like a Binary", "[mhd]") {
  // Our dmp-documentreference profile requires attachment.url; inline data
  // is plain MHD, accepted with --relaxed-profiles.
  ServerProcess server({"--relaxed-profiles"});
  HttpClient c("127.0.0.1", server.port());
  load_fixtures(c);
  Submission s = one_document("1.2.250.1.999.12.1", "1.2.250.1.999.22.1");
  s.documents[0].inline_data = true;
  s.documents[0].size = "34";
  HttpResponse ok = post_bundle(c, provide_bundle(s));
  INFO(ok.body);
  CHECK(ok.status == 200);
  s = one_document("1.2.250.1.999.12.2", "1.2.250.1.999.22.2");
  s.documents[0].inline_data = true;
  s.documents[0].size = "3";
  CHECK(post_bundle(c, provide_bundle(s)).status == 422);
}

TEST_CASE("ITI-65 measures large and line-wrapped base64 documents byte for byte", "[mhd]") {
  ServerProcess server;
  HttpClient c("127.0.0.1", server.port());
  load_fixtures(c);
  // 40,001 bytes: more than one 16 KB decoding chunk, and a final group with padding.
  std::string content;
  for (int i = 0; content.size() < 40001; ++i) content += "ligne " + std::to_string(i) + " du compte rendu\n";
  content.resize(40001);
  const std::string plain = base64(content);
  // The same base64 wrapped at 76 characters (MIME style), as some senders do.
  std::string wrapped;
  for (size_t at = 0; at < plain.size(); at += 76) wrapped += (at ? "\\r\\n" : "") + plain.substr(at, 76);
  auto bundle_with = [&](const std::string& ss, const std::string& doc, const std::string& size,
                         const std::string& data) {
    Submission s = one_document(ss, doc);
    s.documents[0].content = content;
    s.documents[0].size = size;
    std::string b = provide_bundle(s);
    size_t at = b.find(plain);
    REQUIRE(at != std::string::npos);
    return b.replace(at, plain.size(), data);
  };
  HttpResponse ok = post_bundle(c, bundle_with("1.2.250.1.999.13.1", "1.2.250.1.999.23.1", "40001", wrapped));
  INFO(ok.body);
  CHECK(ok.status == 200);
  ok = post_bundle(c, bundle_with("1.2.250.1.999.13.2", "1.2.250.1.999.23.2", "40001", plain));
  INFO(ok.body);
  CHECK(ok.status == 200);
  // One byte off, or one character that is not base64 deep inside the data: refused.
  HttpResponse off = post_bundle(c, bundle_with("1.2.250.1.999.13.3", "1.2.250.1.999.23.3", "40000", plain));
  CHECK(off.status == 422);
  CHECK(off.body.find("40001") != std::string::npos);
  std::string damaged = plain;
  damaged[30000] = '.';
  HttpResponse bad = post_bundle(c, bundle_with("1.2.250.1.999.13.4", "1.2.250.1.999.23.4", "40001", damaged));
  CHECK(bad.status == 422);
}

TEST_CASE("ITI-65 duplicate uniqueId: 409, identical re-submission is idempotent", "[mhd]") {
  ServerProcess server;
  HttpClient c("127.0.0.1", server.port());
  load_fixtures(c);
  Submission s = one_document("1.2.250.1.999.13.1", "1.2.250.1.999.23.1");
  std::string bundle = provide_bundle(s);
  HttpResponse first = post_bundle(c, bundle);
  REQUIRE(first.status == 200);
  auto d1 = json_of(first);
  const int64_t stored = history_total(c);

  // The same submission again (a retry after a lost response): 200, same resources, nothing new.
  HttpResponse again = post_bundle(c, bundle);
  INFO(again.body);
  REQUIRE(again.status == 200);
  auto d2 = json_of(again);
  REQUIRE(d2["entry"].Size() == d1["entry"].Size());
  for (rapidjson::SizeType i = 0; i < d1["entry"].Size(); ++i) {
    CHECK(str(d2["entry"][i]["response"], "status").rfind("200", 0) == 0);
    CHECK(str(d2["entry"][i]["response"], "location") == str(d1["entry"][i]["response"], "location"));
  }
  CHECK(history_total(c) == stored);

  // Another submission reusing the document's uniqueId: 409 naming it.
  Submission other = one_document("1.2.250.1.999.13.2", "1.2.250.1.999.23.1");
  other.documents[0].content = "Un autre contenu.\n";
  HttpResponse dup = post_bundle(c, provide_bundle(other));
  CHECK(dup.status == 409);
  CHECK(dup.body.find("document uniqueId urn:oid:1.2.250.1.999.23.1 was already submitted") != std::string::npos);
  // Reusing the SubmissionSet's uniqueId with a new document: 409 too.
  Submission same_set = one_document("1.2.250.1.999.13.1", "1.2.250.1.999.23.3");
  HttpResponse dup_set = post_bundle(c, provide_bundle(same_set));
  CHECK(dup_set.status == 409);
  CHECK(dup_set.body.find("SubmissionSet uniqueId urn:oid:1.2.250.1.999.13.1") != std::string::npos);
  CHECK(history_total(c) == stored);
}

TEST_CASE("ITI-65 concurrent submissions of one uniqueId: exactly one wins", "[mhd]") {
  ServerProcess server;
  HttpClient setup("127.0.0.1", server.port());
  load_fixtures(setup);
  const int kClients = 6;
  std::atomic<int> created{0}, conflicts{0}, other{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      HttpClient c("127.0.0.1", server.port());
      // Same document uniqueId, different SubmissionSets and contents.
      Submission s = one_document("1.2.250.1.999.14." + std::to_string(i), "1.2.250.1.999.24.1");
      s.documents[0].content = "version " + std::to_string(i) + "\n";
      int status = post_bundle(c, provide_bundle(s)).status;
      if (status == 200) ++created;
      else if (status == 409) ++conflicts;
      else ++other;
    });
  }
  for (auto& t : threads) t.join();
  CHECK(created == 1);
  CHECK(conflicts == kClients - 1);
  CHECK(other == 0);
  auto found = json_of(setup.get("/DocumentReference?identifier=urn:ietf:rfc:3986|urn:oid:1.2.250.1.999.24.1"));
  CHECK(found["total"].GetInt() == 1);
}
