// make_guard on the write side, through the whole FHIR API: a hidden
// resource can be neither changed nor detected by update, patch, delete,
// their conditional forms, or batch/transaction entries; and what a request
// touched reaches the audit trail (AccessRecord).
#include "guard_fixture.h"

using namespace guard_test;

namespace {

std::string observation(const std::string& id, bool hidden, const std::string& text) {
  std::string meta = hidden ? R"("meta":{"security":[{"code":"HIDE"}]},)" : "";
  std::string id_part = id.empty() ? "" : R"("id":")" + id + R"(",)";
  return R"({"resourceType":"Observation",)" + id_part + meta + R"("status":"final","code":{"text":")" + text +
         R"("},"subject":{"reference":"Patient/pat-a"}})";
}

void seed(Env& env) {
  env.put("Patient", "pat-a", R"({"resourceType":"Patient","id":"pat-a"})");
  env.put("Observation", "obs-1", observation("obs-1", false, "visible one"));
  env.put("Observation", "secret-obs-1", observation("secret-obs-1", true, "SECRET-TEXT"));
  env.put("Observation", "secret-obs-2", observation("secret-obs-2", true, "SECRET-TEXT"));
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
  return s;
}

// The stored version of a resource as the open policy sees it (0: none).
int64_t stored_version(Env& env, const std::string& ref) {
  Reply r = env.open("GET", "/" + ref);
  if (r.status != 200) return 0;
  return std::stoll(r.json["meta"]["versionId"].GetString());
}

int64_t stored_observations(Env& env) {
  return bundle_total(env.open("GET", "/Observation?_summary=count").json);
}

struct CapturingAudit final : espace::policy::AuditTrail {
  std::vector<espace::policy::AccessRecord> records;
  std::vector<int> statuses;
  Status record(const espace::policy::Caller&, const espace::interactions::FhirRequest&, int status,
                const espace::policy::AccessRecord& access) override {
    records.push_back(access);
    statuses.push_back(status);
    return Status::ok();
  }
};

const char* kPatch = R"([{"op":"replace","path":"/status","value":"amended"}])";

}  // namespace

TEST_CASE("guard: update, patch and delete of a hidden resource answer as for an absent id", "[guard]") {
  Env env;
  seed(env);
  const std::string body = observation("secret-obs-1", false, "overwritten");

  // PUT: update-as-create is refused for this caller; over a hidden id, the
  // same refusal.
  Reply put_absent = env.call("PUT", "/Observation/nothing-here", replace_all(body, "secret-obs-1", "nothing-here"));
  Reply put_hidden = env.call("PUT", "/Observation/secret-obs-1", body);
  CHECK(put_absent.status == 403);
  CHECK(put_hidden.status == 403);
  CHECK(put_hidden.body == replace_all(put_absent.body, "nothing-here", "secret-obs-1"));
  CHECK(stored_version(env, "Observation/secret-obs-1") == 1);

  // PATCH: 404 as for an unknown id, nothing written.
  Reply patch_absent = env.call("PATCH", "/Observation/nothing-here", kPatch);
  Reply patch_hidden = env.call("PATCH", "/Observation/secret-obs-1", kPatch);
  CHECK(patch_absent.status == 404);
  CHECK(patch_hidden.status == 404);
  CHECK(patch_hidden.body == replace_all(patch_absent.body, "nothing-here", "secret-obs-1"));
  CHECK(stored_version(env, "Observation/secret-obs-1") == 1);

  // DELETE: "nothing to delete" as for an unknown id; the resource stays.
  Reply delete_absent = env.call("DELETE", "/Observation/nothing-here");
  Reply delete_hidden = env.call("DELETE", "/Observation/secret-obs-1");
  CHECK(delete_absent.status == 204);
  CHECK(delete_hidden.status == 204);
  CHECK(delete_hidden.everything == delete_absent.everything);
  CHECK(stored_version(env, "Observation/secret-obs-1") == 1);

  // If-Match against a hidden resource: the conflict text of an absent one.
  Reply match_hidden = env.call("DELETE", "/Observation/secret-obs-1", "", {{"If-Match", "W/\"1\""}});
  Reply match_absent = env.call("DELETE", "/Observation/nothing-here", "", {{"If-Match", "W/\"1\""}});
  CHECK(match_hidden.status == match_absent.status);
  CHECK(match_hidden.body == match_absent.body);

  // Visible resources are written as usual.
  Reply put_visible = env.call("PUT", "/Observation/obs-1", observation("obs-1", false, "changed"));
  CHECK(put_visible.status == 200);
  CHECK(env.call("PATCH", "/Observation/obs-1", kPatch).status == 200);
  CHECK(stored_version(env, "Observation/obs-1") == 3);
  CHECK(env.call("DELETE", "/Observation/obs-1").status == 204);
  CHECK(stored_version(env, "Observation/obs-1") == 0);
  // ...and a create by POST is allowed by these rules.
  Reply created = env.call("POST", "/Observation", observation("", false, "new one"));
  CHECK(created.status == 201);
}

TEST_CASE("guard: conditional interactions do not match hidden resources", "[guard]") {
  Env env;
  seed(env);
  int64_t before = stored_observations(env);

  // Conditional delete: no match, nothing deleted.
  Reply cdel_hidden = env.call("DELETE", "/Observation?_id=secret-obs-1");
  Reply cdel_absent = env.call("DELETE", "/Observation?_id=nothing-here");
  CHECK(cdel_hidden.status == 204);
  CHECK(cdel_hidden.everything == cdel_absent.everything);
  CHECK(stored_version(env, "Observation/secret-obs-1") == 1);
  // Even with several hidden matches: not "multiple matches" (412).
  Reply cdel_two = env.call("DELETE", "/Observation?_id=secret-obs-1,secret-obs-2");
  CHECK(cdel_two.status == 204);

  // Conditional update: no match, so an update-as-create, refused for this
  // caller exactly as when nothing matches.
  std::string body = observation("", false, "conditional");
  Reply cput_hidden = env.call("PUT", "/Observation?_id=secret-obs-1", body);
  Reply cput_absent = env.call("PUT", "/Observation?_id=nothing-here", body);
  CHECK(cput_hidden.status == cput_absent.status);
  CHECK(cput_hidden.body == cput_absent.body);
  Reply cput_two = env.call("PUT", "/Observation?_id=secret-obs-1,secret-obs-2", body);
  CHECK(cput_two.status == cput_absent.status);
  CHECK(stored_version(env, "Observation/secret-obs-1") == 1);

  // Conditional create: the hidden match does not count; a new resource is
  // created as when nothing matches, and the answer shows none of the hidden.
  Reply ccreate = env.call("POST", "/Observation", body, {{"If-None-Exist", "_id=secret-obs-1"}});
  CHECK(ccreate.status == 201);
  CHECK(ccreate.everything.find("secret") == std::string::npos);
  CHECK(ccreate.everything.find("SECRET-TEXT") == std::string::npos);
  CHECK(stored_observations(env) == before + 1);
  // A visible match answers with it (200), nothing created.
  Reply cvisible = env.call("POST", "/Observation", body, {{"If-None-Exist", "_id=obs-1"}});
  CHECK(cvisible.status == 200);
  CHECK(stored_observations(env) == before + 1);
}

TEST_CASE("guard: batch and transaction entries", "[guard]") {
  Env env;
  seed(env);
  int64_t before = stored_observations(env);

  std::string batch = R"({"resourceType":"Bundle","type":"batch","entry":[
    {"request":{"method":"GET","url":"Observation/secret-obs-1"}},
    {"request":{"method":"GET","url":"Observation/obs-1"}},
    {"request":{"method":"GET","url":"Observation?_id=secret-obs-1,obs-1&_total=accurate"}},
    {"request":{"method":"GET","url":"Observation/secret-obs-1/_history"}},
    {"request":{"method":"DELETE","url":"Observation/secret-obs-2"}}]})";
  Reply r = env.call("POST", "/", batch);
  REQUIRE(r.status == 200);
  INFO(r.body);
  const auto& entries = r.json["entry"];
  REQUIRE(entries.Size() == 5);
  CHECK(std::string(entries[0]["response"]["status"].GetString()).rfind("404", 0) == 0);
  CHECK(std::string(entries[1]["response"]["status"].GetString()).rfind("200", 0) == 0);
  const auto& searchset = entries[2]["resource"];
  CHECK(searchset["total"].GetInt() == 1);
  CHECK(searchset["entry"].Size() == 1);
  CHECK(std::string(entries[3]["response"]["status"].GetString()).rfind("404", 0) == 0);
  CHECK(std::string(entries[4]["response"]["status"].GetString()).rfind("204", 0) == 0);
  CHECK(r.body.find("SECRET-TEXT") == std::string::npos);
  // The only mentions of the hidden ids are the echoes of what was asked.
  std::string scrubbed = replace_all(r.body, "Observation/secret-obs-1 does not exist", "");
  scrubbed = replace_all(scrubbed, "_id=secret-obs-1%2Cobs-1", "");
  CHECK(scrubbed.find("secret") == std::string::npos);
  CHECK(stored_version(env, "Observation/secret-obs-2") == 1);

  // A transaction writing over a hidden resource fails as a whole with the
  // refusal of an update-as-create, and its other writes are rolled back.
  auto transaction = [](const std::string& target) {
    return R"({"resourceType":"Bundle","type":"transaction","entry":[
      {"fullUrl":"urn:uuid:0b6c3a8e-1d7e-4d4c-9a57-0d1f3f6b2a11","resource":)" +
           observation("", false, "created in a transaction") + R"(,"request":{"method":"POST","url":"Observation"}},
      {"resource":)" + observation(target, false, "overwrite") +
           R"(,"request":{"method":"PUT","url":"Observation/)" + target + R"("}}]})";
  };
  Reply tx_hidden = env.call("POST", "/", transaction("secret-obs-1"));
  Reply tx_absent = env.call("POST", "/", transaction("nothing-here"));
  CHECK(tx_hidden.status == 403);
  CHECK(tx_absent.status == 403);
  CHECK(tx_hidden.body == replace_all(tx_absent.body, "nothing-here", "secret-obs-1"));
  CHECK(stored_observations(env) == before);
  CHECK(stored_version(env, "Observation/secret-obs-1") == 1);

  // A transaction deleting a hidden resource: nothing to delete, it stays.
  Reply tx_delete = env.call("POST", "/", R"({"resourceType":"Bundle","type":"transaction","entry":[
      {"request":{"method":"DELETE","url":"Observation/secret-obs-2"}}]})");
  CHECK(tx_delete.status == 200);
  CHECK(stored_version(env, "Observation/secret-obs-2") == 1);
}

TEST_CASE("guard: the access record lists what was returned and counts what was withheld", "[guard]") {
  Env env;
  seed(env);
  CapturingAudit audit;
  env.set_audit_trail(&audit);

  REQUIRE(env.call("GET", "/Observation/obs-1").status == 200);
  REQUIRE(audit.records.size() == 1);
  CHECK(audit.records[0].resources == std::vector<std::string>{"Observation/obs-1/_history/1"});
  CHECK(audit.records[0].hidden == 0);
  CHECK(audit.statuses[0] == 200);

  REQUIRE(env.call("GET", "/Observation/secret-obs-1").status == 404);
  REQUIRE(audit.records.size() == 2);
  CHECK(audit.records[1].resources.empty());
  CHECK(audit.records[1].hidden == 1);
  CHECK(audit.statuses[1] == 404);

  REQUIRE(env.call("GET", "/Observation?_id=secret-obs-1,secret-obs-2,obs-1&_total=accurate").status == 200);
  REQUIRE(audit.records.size() == 3);
  CHECK(audit.records[2].resources == std::vector<std::string>{"Observation/obs-1/_history/1"});
  CHECK(audit.records[2].hidden == 2);

  // A write is recorded with its new version.
  REQUIRE(env.call("PUT", "/Observation/obs-1", observation("obs-1", false, "changed")).status == 200);
  REQUIRE(audit.records.size() == 4);
  const auto& written = audit.records[3].resources;
  CHECK(std::find(written.begin(), written.end(), "Observation/obs-1/_history/2") != written.end());
}
