// $immunization-recommendation when no rule of the schedule concerns the
// patient: ImmunizationRecommendation.recommendation is 1..*, so the answer is
// an informational OperationOutcome, never a resource without lines. The
// server runs on a copy of the data tree (ESPACE_DATA_DIR) whose schedule has
// no groups; everything else is the source tree's, through symbolic links.
#include <stdlib.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "http_client.h"
#include "json_checks.h"
#include "server_process.h"

using espace::testing::HttpClient;
using espace::testing::HttpResponse;
using espace::testing::json_of;
using espace::testing::ServerProcess;
using espace::testing::str;

namespace fs = std::filesystem;

namespace {

const char* const kJson = "application/fhir+json";

// Mirrors `from` into `to` with links, except along `keep_path` (relative
// segments) where directories are recreated, and the file at its end is left
// out for the caller to write.
void mirror(const fs::path& from, const fs::path& to, const std::vector<std::string>& keep_path, size_t depth = 0) {
  fs::create_directories(to);
  for (const fs::directory_entry& e : fs::directory_iterator(from)) {
    std::string name = e.path().filename().string();
    if (depth < keep_path.size() && name == keep_path[depth]) {
      if (depth + 1 < keep_path.size()) mirror(e.path(), to / name, keep_path, depth + 1);
      continue;
    }
    if (name.rfind("build", 0) == 0 || name == ".git") continue;
    fs::create_symlink(e.path(), to / name);
  }
}

}  // namespace

TEST_CASE("no recommendation: an informational OperationOutcome, not an empty resource", "[vaccination][integration]") {
  char tmpl[] = "/tmp/espace-vaccination-empty-XXXXXX";
  const fs::path root = ::mkdtemp(tmpl);
  const fs::path source = ESPACE_SOURCE_DIR;
  mirror(source, root / "data", {"server", "interactions", "data", "vaccination-schedule.json"});
  {
    std::ifstream in(source / "server/interactions/data/vaccination-schedule.json");
    std::stringstream text;
    text << in.rdbuf();
    std::string schedule = text.str();
    // The same schedule without any group: nothing concerns anyone.
    size_t at = schedule.find("\"groups\"");
    REQUIRE(at != std::string::npos);
    size_t open = schedule.find('[', at);
    int depth = 0;
    size_t close = open;
    for (; close < schedule.size(); ++close) {
      if (schedule[close] == '[') ++depth;
      if (schedule[close] == ']' && --depth == 0) break;
    }
    REQUIRE(close < schedule.size());
    schedule.replace(open, close - open + 1, "[]");
    std::ofstream(root / "data/server/interactions/data/vaccination-schedule.json") << schedule;
  }
  ::setenv("ESPACE_DATA_DIR", (root / "data").c_str(), 1);
  auto server = std::make_unique<ServerProcess>();
  ::unsetenv("ESPACE_DATA_DIR");
  HttpClient c("127.0.0.1", server->port());
  REQUIRE(c.request("PUT", "/Patient/nobody-concerned",
                    R"({"resourceType":"Patient","id":"nobody-concerned","birthDate":"1980-05-01"})",
                    {{"Content-Type", kJson}})
              .status == 201);
  HttpResponse r = c.get("/Patient/nobody-concerned/$immunization-recommendation?date=2026-11-23", {{"Accept", kJson}});
  CHECK(r.status == 200);
  auto outcome = json_of(r);
  CHECK(str(outcome, "resourceType") == "OperationOutcome");
  REQUIRE(outcome["issue"].GetArray().Size() == 1);
  CHECK(str(outcome["issue"][0], "severity") == "information");
  CHECK(str(outcome["issue"][0], "diagnostics").find("2026-11-23") != std::string::npos);
  server.reset();
  std::error_code ec;
  fs::remove_all(root, ec);
}

TEST_CASE("a recommendation with lines is a valid ImmunizationRecommendation", "[vaccination][integration]") {
  ServerProcess server;
  HttpClient c("127.0.0.1", server.port());
  REQUIRE(c.request("PUT", "/Patient/adult", R"({"resourceType":"Patient","id":"adult","birthDate":"1980-05-01"})",
                    {{"Content-Type", kJson}})
              .status == 201);
  HttpResponse r = c.get("/Patient/adult/$immunization-recommendation?date=2026-11-23", {{"Accept", kJson}});
  REQUIRE(r.status == 200);
  auto rec = json_of(r);
  CHECK(str(rec, "resourceType") == "ImmunizationRecommendation");
  REQUIRE(rec.HasMember("recommendation"));
  CHECK(rec["recommendation"].GetArray().Size() > 0);
  HttpResponse validated =
      c.request("POST", "/ImmunizationRecommendation/$validate", r.body, {{"Content-Type", kJson}, {"Accept", kJson}});
  INFO(validated.body);
  CHECK(validated.status == 200);
  CHECK(validated.body.find("\"severity\":\"error\"") == std::string::npos);
}
