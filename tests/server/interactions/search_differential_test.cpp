// Differential test: test-data/search/cases.tsv holds searches over the
// synthetic data set test-data/search/resources.ndjson with the ids each must
// return, computed independently by tools/generate-search-testdata.py (plain
// Python over the generated values, no FHIRPath, no SQL). Every case runs
// through the real engine: index extraction, query planning, SQLite.
#include <fstream>
#include <sstream>

#include "search_fixture.h"

using namespace search_test;

namespace {
std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  if (s.empty()) return out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, sep)) out.push_back(item);
  return out;
}
}  // namespace

TEST_CASE("differential search cases agree with the independent evaluator", "[search][differential]") {
  Server server;
  std::ifstream resources(std::string(ESPACE_SOURCE_DIR) + "/test-data/search/resources.ndjson");
  REQUIRE(resources.good());
  std::string line;
  int loaded = 0;
  while (std::getline(resources, line)) {
    if (line.empty()) continue;
    REQUIRE(server.put(line) == 201);
    ++loaded;
  }
  REQUIRE(loaded > 400);

  std::ifstream cases(std::string(ESPACE_SOURCE_DIR) + "/test-data/search/cases.tsv");
  REQUIRE(cases.good());
  int run = 0, failed = 0;
  while (std::getline(cases, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> fields = split(line, '\t');
    REQUIRE(fields.size() >= 2);
    std::string type = fields[0], query = fields[1];
    std::vector<std::string> expected = split(fields.size() > 2 ? fields[2] : "", ',');
    std::sort(expected.begin(), expected.end());
    // Both plans: key sets (the default on small data) and walking in creation
    // order (forced with a threshold of 1), one page of 1000 and pages of 7.
    for (int64_t threshold : {int64_t{5000}, int64_t{1}}) {
      server.services().limits.search_walk_threshold = threshold;
      auto r = server.search(type, query + "&_count=1000");
      INFO(type << "?" << query << " (walk threshold " << threshold << ")");
      INFO(r.error.message());
      CHECK(r.error.is_ok());
      std::vector<std::string> got = match_ids(r.json);
      std::sort(got.begin(), got.end());
      CHECK(got == expected);
      if (got != expected) ++failed;
      ++run;
    }
    {
      std::vector<std::string> paged;
      std::string q = query + "&_count=7";
      for (int pages = 0; pages < 100; ++pages) {
        auto r = server.search(type, q);
        REQUIRE(r.error.is_ok());
        for (auto& id : match_ids(r.json)) paged.push_back(id);
        rapidjson::Document d;
        d.Parse(r.json.c_str());
        std::string next;
        for (auto& l : d["link"].GetArray())
          if (std::string(l["relation"].GetString()) == "next") next = l["url"].GetString();
        if (next.empty()) break;
        q = next.substr(next.find('?') + 1);
      }
      std::sort(paged.begin(), paged.end());
      INFO(type << "?" << query << " in pages of 7");
      CHECK(paged == expected);
    }
  }
  CHECK(run >= 400);
  WARN("differential search cases: " << run << " run, " << failed << " failed");
}
