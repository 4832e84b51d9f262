// Patient/[id]/$everything (everything.cpp), under the open policy (what the
// operation returns) and under the guard (what the policy withholds).
#include "guard_fixture.h"

using namespace guard_test;

namespace {

std::string observation(const std::string& id, const std::string& patient, bool hidden,
                        const std::string& performer = "") {
  std::string meta = hidden ? R"("meta":{"security":[{"code":"HIDE"}]},)" : "";
  std::string perf = performer.empty() ? "" : R"(,"performer":[{"reference":")" + performer + R"("}])";
  return R"({"resourceType":"Observation","id":")" + id + R"(",)" + meta +
         R"("status":"final","code":{"text":"t"},"subject":{"reference":"Patient/)" + patient + R"("})" + perf + "}";
}

void seed(Env& env) {
  env.put("Patient", "pat-a", R"({"resourceType":"Patient","id":"pat-a"})");
  env.put("Patient", "pat-b", R"({"resourceType":"Patient","id":"pat-b"})");
  env.put("Patient", "secret-pat", R"({"resourceType":"Patient","id":"secret-pat","meta":{"security":[{"code":"HIDE"}]}})");
  env.put("Organization", "org-1", R"({"resourceType":"Organization","id":"org-1","name":"Clinic"})");
  env.put("Practitioner", "pr-ok", R"({"resourceType":"Practitioner","id":"pr-ok"})");
  env.put("Practitioner", "pr-via-hidden", R"({"resourceType":"Practitioner","id":"pr-via-hidden"})");
  env.put("Observation", "obs-1", observation("obs-1", "pat-a", false, "Practitioner/pr-ok"));
  env.put("Observation", "secret-obs-1", observation("secret-obs-1", "pat-a", true, "Practitioner/pr-via-hidden"));
  env.put("Observation", "obs-2", observation("obs-2", "pat-a", false, "Organization/org-1"));
  env.put("Encounter", "enc-1",
          R"({"resourceType":"Encounter","id":"enc-1","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/pat-a"}})");
  env.put("Observation", "obs-b", observation("obs-b", "pat-b", false));
  env.put("Observation", "obs-3", observation("obs-3", "pat-a", false));
}

std::vector<std::string> all_pages(Env& env, const std::string& first, bool guarded, size_t max_page) {
  std::vector<std::string> all;
  std::string target = first;
  for (int i = 0; i < 20 && !target.empty(); ++i) {
    Reply r = guarded ? env.call("GET", target) : env.open("GET", target);
    INFO(target << " -> " << r.body);
    REQUIRE(r.status == 200);
    std::vector<std::string> matches = entry_refs(r.json, "match");
    CHECK(matches.size() <= max_page + 1);  // + the Patient on the first page
    for (auto& m : entry_refs(r.json)) all.push_back(m);
    target = link_target(r.json, "next");
  }
  return all;
}

}  // namespace

TEST_CASE("$everything: the patient, its compartment and what it references", "[guard][everything]") {
  Env env;
  seed(env);
  Reply r = env.open("GET", "/Patient/pat-a/$everything");
  REQUIRE(r.status == 200);
  INFO(r.body);
  CHECK(std::string(r.json["type"].GetString()) == "searchset");
  CHECK(entry_refs(r.json, "match") == std::vector<std::string>{"Patient/pat-a", "Observation/obs-1",
                                                                "Observation/secret-obs-1", "Observation/obs-2",
                                                                "Encounter/enc-1", "Observation/obs-3"});
  std::vector<std::string> inc = entry_refs(r.json, "include");
  std::set<std::string> included(inc.begin(), inc.end());
  CHECK(included ==
        std::set<std::string>{"Practitioner/pr-ok", "Practitioner/pr-via-hidden", "Organization/org-1"});

  // _type narrows the types (and leaves the Patient out unless named).
  Reply typed = env.open("GET", "/Patient/pat-a/$everything?_type=Encounter");
  CHECK(entry_refs(typed.json) == std::vector<std::string>{"Encounter/enc-1"});
  Reply with_patient = env.open("GET", "/Patient/pat-a/$everything?_type=Patient,Encounter");
  CHECK(entry_refs(with_patient.json) == std::vector<std::string>{"Patient/pat-a", "Encounter/enc-1"});

  // _since: only what changed from then on.
  std::string since = env.open("GET", "/Encounter/enc-1").json["meta"]["lastUpdated"].GetString();
  Reply recent = env.open("GET", "/Patient/pat-a/$everything?_since=" + since);
  CHECK(entry_refs(recent.json, "match") == std::vector<std::string>{"Encounter/enc-1", "Observation/obs-3"});

  // _count pages with next links; every resource once.
  std::vector<std::string> paged = all_pages(env, "/Patient/pat-a/$everything?_count=2", false, 2);
  std::set<std::string> paged_set(paged.begin(), paged.end());
  CHECK(paged_set.count("Patient/pat-a") == 1);
  CHECK(std::count(paged.begin(), paged.end(), "Patient/pat-a") == 1);
  CHECK(paged_set.count("Observation/obs-3") == 1);
  CHECK(paged_set.count("Observation/obs-b") == 0);

  // POST with a Parameters body.
  Reply posted = env.open("POST", "/Patient/pat-a/$everything",
                          R"({"resourceType":"Parameters","parameter":[{"name":"_type","valueCode":"Encounter"}]})");
  CHECK(posted.status == 200);
  CHECK(entry_refs(posted.json) == std::vector<std::string>{"Encounter/enc-1"});

  // Errors: unknown patient, unsupported care-date range, unknown type.
  CHECK(env.open("GET", "/Patient/nobody/$everything").status == 404);
  CHECK(env.open("GET", "/Patient/pat-a/$everything?start=2020-01-01").status == 400);
  CHECK(env.open("GET", "/Patient/pat-a/$everything?_type=Nonsense").status == 400);
}

TEST_CASE("$everything under the guard: hidden resources and what only they reference stay out", "[guard][everything]") {
  Env env;
  seed(env);
  Reply r = env.call("GET", "/Patient/pat-a/$everything");
  REQUIRE(r.status == 200);
  INFO(r.everything);
  CHECK(r.everything.find("secret") == std::string::npos);
  CHECK(r.everything.find("pr-via-hidden") == std::string::npos);
  CHECK(entry_refs(r.json, "match") == std::vector<std::string>{"Patient/pat-a", "Observation/obs-1",
                                                                "Observation/obs-2", "Encounter/enc-1",
                                                                "Observation/obs-3"});
  std::vector<std::string> inc = entry_refs(r.json, "include");
  CHECK(std::set<std::string>(inc.begin(), inc.end()) ==
        std::set<std::string>{"Practitioner/pr-ok", "Organization/org-1"});

  // Paged: the same resources, no empty page behind a next link.
  std::vector<std::string> paged = all_pages(env, "/Patient/pat-a/$everything?_count=1", true, 1);
  std::set<std::string> paged_set(paged.begin(), paged.end());
  CHECK(paged_set == std::set<std::string>{"Patient/pat-a", "Observation/obs-1", "Observation/obs-2",
                                           "Encounter/enc-1", "Observation/obs-3", "Practitioner/pr-ok",
                                           "Organization/org-1"});

  // A hidden patient answers as an unknown one.
  Reply hidden = env.call("GET", "/Patient/secret-pat/$everything");
  Reply absent = env.call("GET", "/Patient/nothing-here/$everything");
  CHECK(hidden.status == 404);
  CHECK(absent.status == 404);
  std::string expected = absent.body;
  for (size_t at = expected.find("nothing-here"); at != std::string::npos; at = expected.find("nothing-here", at))
    expected.replace(at, 12, "secret-pat");
  CHECK(hidden.body == expected);
}
