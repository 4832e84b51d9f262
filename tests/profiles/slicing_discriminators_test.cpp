// Slicing by the "exists" and "profile" discriminators
// (hl7.org/fhir/R4/profiling.html#discriminator) on the test profiles and
// resources of test-data/profiles/slicing, and a validator used from several
// threads before any of its rules were compiled.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <thread>

#include "espace/fhir/data_files.h"
#include "profiles_support.h"

using namespace espace;

namespace {

std::string slicing_file(const std::string& name) {
  return profiles_test::read_text(std::string(ESPACE_SOURCE_DIR) + "/test-data/profiles/slicing/" + name);
}

// fr-practitioner (the target of the resolve() slice) and the test profiles.
std::unique_ptr<profiles::Validator> make_validator() {
  auto v = std::make_unique<profiles::Validator>(profiles_test::definitions(), &profiles_test::terminology());
  std::string practitioner;
  fhir::Status st = fhir::read_data_file("profiles/data/fr-practitioner.json", &practitioner);
  if (st) st = v->add_profile_json(practitioner);
  for (const char* name : {"profile-author-by-profile.json", "profile-identifier-by-exists.json",
                           "profile-identifier-rpps.json", "profile-practitioner-identifier-by-profile.json"})
    if (st) st = v->add_profile_json(slicing_file(name));
  if (!st) throw std::runtime_error("test profiles do not load: " + st.message());
  return v;
}

const profiles::Validator& slicing_validator() {
  static std::unique_ptr<profiles::Validator> v = make_validator();
  return *v;
}

// Errors as "message-id @ location", sorted; dom-6 (no narrative) left out: the fixtures stay short.
std::vector<std::string> errors_of(const profiles::Validator& v, const std::string& name) {
  fhir::Node n = profiles_test::parse(slicing_file(name));
  std::vector<std::string> out;
  for (const fhir::Issue& i : v.validate(n))
    if ((i.severity == fhir::Severity::Error || i.severity == fhir::Severity::Fatal) && i.message_id != "inv-dom-6")
      out.push_back(i.message_id + " @ " + i.expression);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> errors_of(const std::string& name) { return errors_of(slicing_validator(), name); }

using Errors = std::vector<std::string>;

}  // namespace

TEST_CASE("exists discriminator: the slice that requires the element and the one that forbids it",
          "[profiles][slicing]") {
  CHECK(errors_of("patient-identifier-exists-valid.json").empty());
  // Two identifiers with a period: both fall in "temporary" (max 1), none in "permanent" (min 1).
  CHECK(errors_of("patient-identifier-exists-invalid.json") ==
        Errors{"slice-max @ Patient.identifier", "slice-min @ Patient.identifier"});
}

TEST_CASE("profile discriminator through resolve(): the referenced resource meets the target profile",
          "[profiles][slicing]") {
  // The contained author has an RPPS identifier: it meets fr-practitioner.
  CHECK(errors_of("documentreference-author-professional.json").empty());
  // Only an ADELI number: it does not, so the required slice is empty.
  CHECK(errors_of("documentreference-author-not-professional.json") ==
        Errors{"slice-min @ DocumentReference.author"});
  // The same through a Bundle entry's fullUrl.
  CHECK(errors_of("bundle-author-professional.json").empty());
  CHECK(errors_of("bundle-author-not-professional.json") == Errors{"slice-min @ Bundle.entry[0].resource.author"});
}

TEST_CASE("profile discriminator on $this: a data type profile", "[profiles][slicing]") {
  CHECK(errors_of("practitioner-identifier-profile-valid.json").empty());
  // The ADELI identifier does not meet test-identifier-rpps and the slicing is closed.
  CHECK(errors_of("practitioner-identifier-profile-invalid.json") ==
        Errors{"slice-unmatched @ Practitioner.identifier[1]"});
}

TEST_CASE("slicing definitions the validator refuses", "[profiles][slicing]") {
  profiles::Validator v(profiles_test::definitions(), &profiles_test::terminology());
  std::string text = slicing_file("profile-identifier-by-exists.json");
  // A third slice under an exists discriminator.
  std::string three = text;
  std::string third = R"({"id": "Patient.identifier:other", "path": "Patient.identifier", "sliceName": "other"},)";
  three.insert(three.find("{\n        \"id\": \"Patient.identifier:permanent\","), third);
  fhir::Status st = v.add_profile_json(three);
  REQUIRE(!st);
  CHECK(st.message().find("at most two slices") != std::string::npos);
  // An unknown discriminator type.
  std::string unknown = text;
  unknown.replace(unknown.find("\"exists\""), 8, "\"presence\"");
  st = v.add_profile_json(unknown);
  REQUIRE(!st);
  CHECK(st.message().find("unknown discriminator type 'presence'") != std::string::npos);
  CHECK(v.add_profile_json(text));
}

TEST_CASE("a fresh validator used from several threads at once gives the serial answers", "[profiles][slicing]") {
  const char* files[] = {"patient-identifier-exists-valid.json",        "patient-identifier-exists-invalid.json",
                         "documentreference-author-professional.json",  "documentreference-author-not-professional.json",
                         "bundle-author-not-professional.json",         "practitioner-identifier-profile-invalid.json"};
  std::vector<Errors> serial;
  for (const char* f : files) serial.push_back(errors_of(f));
  // No rule compiled yet: the threads race to build the rules of each type.
  std::unique_ptr<profiles::Validator> fresh = make_validator();
  std::atomic<int> ready{0}, mismatches{0};
  std::vector<std::thread> threads;
  const int kThreads = 4;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      ++ready;
      while (ready < kThreads) std::this_thread::yield();
      for (int round = 0; round < 10; ++round)
        for (size_t i = 0; i < std::size(files); ++i) {
          size_t k = (i + static_cast<size_t>(t)) % std::size(files);  // each thread its own order
          if (errors_of(*fresh, files[k]) != serial[k]) ++mismatches;
        }
    });
  for (auto& t : threads) t.join();
  CHECK(mismatches == 0);
  // Every invariant compiled once, as on the validator used serially.
  CHECK(fresh->stats().invariants == slicing_validator().stats().invariants);
}
