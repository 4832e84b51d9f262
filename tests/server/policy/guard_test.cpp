// make_guard through the whole FHIR API (http::FhirApi::handle_now) over a
// real SQLite store: hidden resources answer exactly as absent ones, and no
// trace of them (id, text, count, link) reaches any response.
#include "guard_fixture.h"

using namespace guard_test;

namespace {

const char* kHiddenText = "SECRET-TEXT";

std::string observation(const std::string& id, const std::string& patient, bool hidden,
                        const std::string& performer = "") {
  std::string meta = hidden ? R"("meta":{"security":[{"system":"urn:oid:1.2.250.1.213.1.1.4.13","code":"HIDE"}]},)"
                            : "";
  std::string text = hidden ? kHiddenText : "visible " + id;
  std::string perf = performer.empty() ? "" : R"(,"performer":[{"reference":")" + performer + R"("}])";
  return R"({"resourceType":"Observation","id":")" + id + R"(",)" + meta +
         R"("status":"final","code":{"text":")" + text + R"("},"subject":{"reference":"Patient/)" + patient +
         R"("})" + perf + "}";
}

std::string practitioner(const std::string& id, bool hidden) {
  std::string meta = hidden ? R"("meta":{"security":[{"code":"HIDE"}]},)" : "";
  return R"({"resourceType":"Practitioner","id":")" + id + R"(",)" + meta + R"("name":[{"family":")" +
         (hidden ? kHiddenText : "Visible") + R"("}]})";
}

// Seeds the store (creation order interleaves hidden and visible resources,
// so pages have hidden rows between visible ones):
//   visible Observations of pat-a: obs-1 .. obs-6; obs-b1 belongs to pat-b;
//   hidden: secret-obs-1..3, secret-masked (visible v1, hidden v2),
//   secret-deleted (hidden, then deleted); obs-deleted (visible, deleted);
//   Practitioner pr-ok (visible), hidden-pr (hidden), pr-via-hidden
//   (visible, but referenced only by the hidden secret-obs-1).
void seed(Env& env) {
  env.put("Patient", "pat-a", R"({"resourceType":"Patient","id":"pat-a","name":[{"family":"Alpha"}]})");
  env.put("Patient", "pat-b", R"({"resourceType":"Patient","id":"pat-b","name":[{"family":"Beta"}]})");
  env.put("Practitioner", "pr-ok", practitioner("pr-ok", false));
  env.put("Practitioner", "hidden-pr", practitioner("hidden-pr", true));
  env.put("Practitioner", "pr-via-hidden", practitioner("pr-via-hidden", false));
  env.put("Observation", "obs-1", observation("obs-1", "pat-a", false));
  env.put("Observation", "secret-obs-1", observation("secret-obs-1", "pat-a", true, "Practitioner/pr-via-hidden"));
  env.put("Observation", "obs-2", observation("obs-2", "pat-a", false));
  env.put("Observation", "secret-obs-2", observation("secret-obs-2", "pat-a", true));
  env.put("Observation", "obs-3", observation("obs-3", "pat-a", false));
  env.put("Observation", "secret-obs-3", observation("secret-obs-3", "pat-a", true));
  env.put("Observation", "obs-4", observation("obs-4", "pat-a", false));
  env.put("Observation", "obs-5", observation("obs-5", "pat-a", false, "Practitioner/hidden-pr"));
  env.put("Observation", "obs-6", observation("obs-6", "pat-a", false, "Practitioner/pr-ok"));
  env.put("Observation", "obs-b1", observation("obs-b1", "pat-b", false));
  env.put("Observation", "secret-masked", observation("secret-masked", "pat-a", false));
  env.put("Observation", "secret-masked", observation("secret-masked", "pat-a", true));
  env.put("Observation", "secret-deleted", observation("secret-deleted", "pat-a", true));
  REQUIRE(env.open("DELETE", "/Observation/secret-deleted").status == 204);
  env.put("Observation", "obs-deleted", observation("obs-deleted", "pat-a", false));
  REQUIRE(env.open("DELETE", "/Observation/obs-deleted").status == 204);
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
  return s;
}

// No hidden id, hidden text, or resource reachable only through a hidden one.
void check_no_trace(const Reply& r, bool reachable_only_through_hidden = true) {
  INFO(r.everything);
  CHECK(r.everything.find("secret") == std::string::npos);
  CHECK(r.everything.find(kHiddenText) == std::string::npos);
  if (reachable_only_through_hidden) CHECK(r.everything.find("pr-via-hidden") == std::string::npos);
}

// Follows `relation` links from `first`, returning every page's entries.
std::vector<std::vector<std::string>> follow(Env& env, const std::string& first, const char* relation,
                                             bool reachable_only_through_hidden = true) {
  std::vector<std::vector<std::string>> pages;
  std::string target = first;
  for (int i = 0; i < 50 && !target.empty(); ++i) {
    Reply r = env.call("GET", target);
    INFO(target << " -> " << r.body);
    REQUIRE(r.status == 200);
    check_no_trace(r, reachable_only_through_hidden);
    pages.push_back(entry_refs(r.json));
    target = link_target(r.json, relation);
  }
  return pages;
}

std::vector<std::string> flatten(const std::vector<std::vector<std::string>>& pages) {
  std::vector<std::string> all;
  for (const auto& p : pages) all.insert(all.end(), p.begin(), p.end());
  return all;
}

using Refs = std::vector<std::string>;

}  // namespace

TEST_CASE("guard: hidden resources read, vread and history as never-written ids", "[guard]") {
  Env env;
  seed(env);
  // The store does hold them: the open policy sees them.
  REQUIRE(env.open("GET", "/Observation/secret-obs-1").status == 200);
  REQUIRE(env.open("GET", "/Observation/secret-masked/_history/1").status == 200);
  REQUIRE(env.open("GET", "/Observation/secret-deleted").status == 410);

  Reply absent = env.call("GET", "/Observation/nothing-here");
  REQUIRE(absent.status == 404);
  for (const char* id : {"secret-obs-1", "secret-masked", "secret-deleted"}) {
    Reply r = env.call("GET", std::string("/Observation/") + id);
    INFO(id);
    CHECK(r.status == 404);
    CHECK(r.body == replace_all(absent.body, "nothing-here", id));
    CHECK(r.everything.find(kHiddenText) == std::string::npos);
  }

  // vread of every version of a hidden resource, including the version that
  // was visible before it was masked and the delete marker.
  for (const char* target : {"/Observation/secret-masked/_history/1", "/Observation/secret-masked/_history/2",
                             "/Observation/secret-deleted/_history/1", "/Observation/secret-deleted/_history/2"}) {
    std::string t = target;
    std::string id = t.substr(13, t.find("/_history") - 13);
    Reply r = env.call("GET", t);
    Reply a = env.call("GET", replace_all(t, id, "nothing-here"));
    INFO(t);
    CHECK(r.status == 404);
    CHECK(a.status == 404);
    CHECK(r.body == replace_all(a.body, "nothing-here", id));
  }

  // Instance history of a hidden resource: as for an unknown id.
  Reply absent_history = env.call("GET", "/Observation/nothing-here/_history");
  CHECK(absent_history.status == 404);
  for (const char* id : {"secret-obs-1", "secret-masked", "secret-deleted"}) {
    Reply r = env.call("GET", std::string("/Observation/") + id + "/_history");
    INFO(id);
    CHECK(r.status == 404);
    CHECK(r.body == replace_all(absent_history.body, "nothing-here", id));
  }

  // Visible resources behave as usual: a read, a vread, and 410 for a
  // visible deleted resource.
  Reply ok = env.call("GET", "/Observation/obs-1");
  CHECK(ok.status == 200);
  CHECK(ok.body.find("visible obs-1") != std::string::npos);
  CHECK(env.call("GET", "/Observation/obs-1/_history/1").status == 200);
  CHECK(env.call("GET", "/Observation/obs-deleted").status == 410);
  Reply h = env.call("GET", "/Observation/obs-deleted/_history");
  CHECK(h.status == 200);
  CHECK(bundle_total(h.json) == 2);
}

TEST_CASE("guard: type and system history page and count visible versions only", "[guard]") {
  Env env;
  seed(env);
  // Visible Observation versions: obs-1..6, obs-b1 (history is not narrowed
  // to a compartment by these rules), obs-deleted v1 and its delete marker.
  const Refs expected = {"Observation/obs-deleted", "Observation/obs-deleted", "Observation/obs-b1",
                         "Observation/obs-6",       "Observation/obs-5",       "Observation/obs-4",
                         "Observation/obs-3",       "Observation/obs-2",       "Observation/obs-1"};
  Reply whole = env.call("GET", "/Observation/_history");
  REQUIRE(whole.status == 200);
  check_no_trace(whole);
  CHECK(bundle_total(whole.json) == static_cast<int64_t>(expected.size()));
  CHECK(entry_refs(whole.json) == expected);
  // The store holds more: the open policy counts the hidden versions too.
  Reply open_whole = env.open("GET", "/Observation/_history");
  CHECK(bundle_total(open_whole.json) > bundle_total(whole.json));

  for (int count : {1, 2, 4}) {
    auto pages = follow(env, "/Observation/_history?_count=" + std::to_string(count), "next");
    INFO("count " << count);
    CHECK(flatten(pages) == expected);
    // Only the last page may be empty: the history interaction links to a
    // next page whenever a page is full (as it does without the guard).
    for (size_t i = 0; i + 1 < pages.size(); ++i) CHECK(!pages[i].empty());
    for (const auto& p : pages) CHECK(static_cast<int>(p.size()) <= count);
    Reply first = env.call("GET", "/Observation/_history?_count=" + std::to_string(count));
    CHECK(bundle_total(first.json) == static_cast<int64_t>(expected.size()));
  }

  // System history: Patients and visible Practitioners too.
  auto system_pages = follow(env, "/_history?_count=3", "next", false);
  Refs system = flatten(system_pages);
  Reply system_first = env.call("GET", "/_history?_count=3");
  CHECK(bundle_total(system_first.json) == static_cast<int64_t>(system.size()));
  CHECK(system.size() == expected.size() + 4);  // + pat-a, pat-b, pr-ok, pr-via-hidden
  for (size_t i = 0; i + 1 < system_pages.size(); ++i) CHECK(!system_pages[i].empty());

  // _since: from obs-6's creation on.
  Reply obs6 = env.open("GET", "/Observation/obs-6");
  std::string since = obs6.json["meta"]["lastUpdated"].GetString();
  Reply recent = env.call("GET", "/Observation/_history?_since=" + since);
  check_no_trace(recent);
  CHECK(entry_refs(recent.json) ==
        Refs{"Observation/obs-deleted", "Observation/obs-deleted", "Observation/obs-b1", "Observation/obs-6"});
  CHECK(bundle_total(recent.json) == 4);
}

TEST_CASE("guard: searches page, count and include over visible resources only", "[guard]") {
  Env env;
  seed(env);
  const Refs visible = {"Observation/obs-1", "Observation/obs-2", "Observation/obs-3",
                        "Observation/obs-4", "Observation/obs-5", "Observation/obs-6"};
  // The unguarded store matches the hidden ones too.
  Reply open_all = env.open("GET", "/Observation?subject=Patient/pat-a&_total=accurate");
  CHECK(bundle_total(open_all.json) > 6);

  // Narrowed to pat-a (restrict_search) and filtered (may_see).
  Reply all = env.call("GET", "/Observation?_total=accurate");
  REQUIRE(all.status == 200);
  check_no_trace(all);
  CHECK(entry_refs(all.json) == visible);
  CHECK(bundle_total(all.json) == 6);

  Reply count_only = env.call("GET", "/Observation?_summary=count");
  check_no_trace(count_only);
  CHECK(bundle_total(count_only.json) == 6);
  CHECK(entry_refs(count_only.json).empty());
  Reply count_zero = env.call("GET", "/Observation?_count=0");
  CHECK(bundle_total(count_zero.json) == 6);

  // Keyset pages forward, then previous links back from the last page.
  auto pages = follow(env, "/Observation?_count=2&_total=accurate", "next");
  CHECK(pages == std::vector<Refs>{{"Observation/obs-1", "Observation/obs-2"},
                                   {"Observation/obs-3", "Observation/obs-4"},
                                   {"Observation/obs-5", "Observation/obs-6"}});
  Reply page2 = env.call("GET", "/Observation?_count=2&_total=accurate");
  Reply last = env.call("GET", link_target(env.call("GET", link_target(page2.json, "next")).json, "next"));
  CHECK(bundle_total(last.json) == 6);
  CHECK(link_target(last.json, "next").empty());
  auto back = follow(env, link_target(last.json, "previous"), "previous");
  CHECK(back == std::vector<Refs>{{"Observation/obs-3", "Observation/obs-4"},
                                  {"Observation/obs-1", "Observation/obs-2"}});
  // A page that exactly ends the result has no next link.
  Reply exact = env.call("GET", "/Observation?_count=6");
  CHECK(entry_refs(exact.json) == visible);
  CHECK(link_target(exact.json, "next").empty());

  // Explicit sort: offset pages count visible matches.
  auto sorted = follow(env, "/Observation?_sort=-_id&_count=4", "next");
  CHECK(sorted == std::vector<Refs>{{"Observation/obs-6", "Observation/obs-5", "Observation/obs-4", "Observation/obs-3"},
                                    {"Observation/obs-2", "Observation/obs-1"}});
  Reply sorted2 = env.call("GET", link_target(env.call("GET", "/Observation?_sort=-_id&_count=4").json, "next"));
  CHECK(entry_refs(env.call("GET", link_target(sorted2.json, "previous")).json) ==
        Refs{"Observation/obs-6", "Observation/obs-5", "Observation/obs-4", "Observation/obs-3"});

  // _include: obs-5's performer is hidden; pr-via-hidden is referenced only by
  // a hidden Observation.
  Reply inc = env.call("GET", "/Observation?_include=Observation:performer");
  check_no_trace(inc);
  CHECK(entry_refs(inc.json, "match") == visible);
  CHECK(entry_refs(inc.json, "include") == Refs{"Practitioner/pr-ok"});
  // The open policy includes all three practitioners from the same search.
  Reply open_inc = env.open("GET", "/Observation?subject=Patient/pat-a&_include=Observation:performer");
  CHECK(entry_refs(open_inc.json, "include").size() == 3);

  // _revinclude and :iterate from visible resources only.
  Reply rev = env.call("GET",
                       "/Patient?_id=pat-a&_revinclude=Observation:subject&_include:iterate=Observation:performer");
  REQUIRE(rev.status == 200);
  check_no_trace(rev);
  CHECK(entry_refs(rev.json, "match") == Refs{"Patient/pat-a"});
  Refs included = entry_refs(rev.json, "include");
  std::set<std::string> included_set(included.begin(), included.end());
  std::set<std::string> expected_included(visible.begin(), visible.end());
  expected_included.insert("Practitioner/pr-ok");
  CHECK(included_set == expected_included);
  CHECK(included.size() == included_set.size());

  // Searches on hidden values find nothing; _has is refused by the rules.
  Reply by_id = env.call("GET", "/Observation?_id=secret-obs-1,secret-obs-2&_total=accurate");
  CHECK(by_id.status == 200);
  CHECK(entry_refs(by_id.json).empty());
  CHECK(bundle_total(by_id.json) == 0);
  Reply by_text = env.call("GET", std::string("/Observation?code:text=") + kHiddenText + "&_total=accurate");
  CHECK(entry_refs(by_text.json).empty());
  CHECK(bundle_total(by_text.json) == 0);
  CHECK(env.call("GET", "/Patient?_has:Observation:subject:status=final").status == 403);

  // Chains and _has are resolved over visible resources only: a hidden
  // performer's name does not select obs-5, and a Practitioner referenced
  // only by a hidden Observation is not selected through it.
  Reply chain_hidden = env.call("GET", std::string("/Observation?performer:Practitioner.name=") + kHiddenText +
                                           "&_total=accurate");
  REQUIRE(chain_hidden.status == 200);
  CHECK(entry_refs(chain_hidden.json).empty());
  CHECK(bundle_total(chain_hidden.json) == 0);
  CHECK(entry_refs(env.open("GET", std::string("/Observation?performer:Practitioner.name=") + kHiddenText).json) ==
        Refs{"Observation/obs-5"});  // the unguarded store does match it
  Reply chain_visible = env.call("GET", "/Observation?performer:Practitioner.name=Visible");
  CHECK(entry_refs(chain_visible.json) == Refs{"Observation/obs-6"});
  Reply has_hidden = env.call("GET", "/Practitioner?_has:Observation:performer:_id=secret-obs-1&_total=accurate");
  REQUIRE(has_hidden.status == 200);
  CHECK(entry_refs(has_hidden.json).empty());
  CHECK(bundle_total(has_hidden.json) == 0);
  CHECK(entry_refs(env.open("GET", "/Practitioner?_has:Observation:performer:_id=secret-obs-1").json) ==
        Refs{"Practitioner/pr-via-hidden"});
  Reply has_visible = env.call("GET", "/Practitioner?_has:Observation:performer:status=final");
  check_no_trace(has_visible);
  CHECK(entry_refs(has_visible.json) == Refs{"Practitioner/pr-ok"});
  Reply has_not = env.call("GET", "/Practitioner?_id=pr-ok,pr-via-hidden&_has:Observation:performer:code:text=visible");
  CHECK(entry_refs(has_not.json) == Refs{"Practitioner/pr-ok"});

  // System search and compartment searches.
  Reply system = env.call("GET", "/?_type=Observation,Practitioner&_total=accurate");
  REQUIRE(system.status == 200);
  check_no_trace(system, false);  // pr-via-hidden is a visible match here
  CHECK(bundle_total(system.json) == static_cast<int64_t>(entry_refs(system.json).size()));
  CHECK(entry_refs(system.json).size() == 9);  // obs-1..6, obs-b1, pr-ok, pr-via-hidden
  Reply compartment = env.call("GET", "/Patient/pat-a/Observation?_total=accurate");
  check_no_trace(compartment);
  CHECK(entry_refs(compartment.json) == visible);
  CHECK(bundle_total(compartment.json) == 6);
  Reply everything_in = env.call("GET", "/Patient/pat-a/*?_total=accurate");
  check_no_trace(everything_in);
  CHECK(bundle_total(everything_in.json) == static_cast<int64_t>(entry_refs(everything_in.json).size()));
}
