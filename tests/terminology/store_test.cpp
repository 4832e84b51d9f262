// The terminology store over the official R4 package.
#include <catch2/catch.hpp>
#include <atomic>
#include <iostream>
#include <memory>
#include <thread>

#include "espace/fhir/definitions.h"
#include "espace/terminology/terminology.h"

using namespace espace;
using namespace espace::terminology;

namespace {

const Store& store() {
  static std::unique_ptr<Store> s = [] {
    std::unique_ptr<Store> out;
    LoadStats stats;
    fhir::Status st = Store::load(fhir::Definitions::default_package_dir(), &out, &stats);
    if (!st) throw std::runtime_error("cannot load terminology: " + st.message());
    std::cout << "terminology: " << stats.code_systems << " code systems, " << stats.value_sets << " value sets, "
              << stats.concepts << " concepts loaded in " << stats.seconds << " s\n";
    return out;
  }();
  return *s;
}

constexpr const char* kGender = "http://hl7.org/fhir/ValueSet/administrative-gender";
constexpr const char* kGenderSystem = "http://hl7.org/fhir/administrative-gender";
constexpr const char* kRoleCode = "http://terminology.hl7.org/CodeSystem/v3-RoleCode";

}  // namespace

TEST_CASE("the package's code systems and value sets load", "[terminology]") {
  CHECK(store().code_system_count() > 900);
  CHECK(store().value_set_count() > 1200);
  const CodeSystem* cs = store().code_system(kGenderSystem);
  REQUIRE(cs);
  CHECK(cs->is_complete());
  CHECK(cs->find("female") >= 0);
  CHECK(cs->find("Female") < 0);  // case-sensitive by default
  CHECK(store().code_system(std::string(kGenderSystem) + "|4.0.1") == cs);
}

TEST_CASE("whole-system include expands to every concept", "[terminology]") {
  std::shared_ptr<const Expansion> e;
  REQUIRE(store().expand(kGender, &e));
  CHECK(e->is_complete());
  REQUIRE(e->codes.size() == 4);
  CHECK(e->contains(kGenderSystem, "unknown"));
  CHECK(e->contains("", "other"));
  CHECK_FALSE(e->contains("http://example.org/other", "other"));
}

TEST_CASE("validate_code: valid, invalid, not-checked", "[terminology]") {
  CodeResult r = store().validate_code(kGender, kGenderSystem, "male");
  CHECK(r.validity == Validity::Valid);
  CHECK(r.display == "Male");
  r = store().validate_code(kGender, "", "female");
  CHECK(r.validity == Validity::Valid);
  r = store().validate_code(kGender, kGenderSystem, "M");
  CHECK(r.validity == Validity::Invalid);
  CHECK(r.message.find("not defined in code system") != std::string::npos);
  r = store().validate_code(kGender, "http://example.org/sex", "male");
  CHECK(r.validity == Validity::Invalid);
  CHECK(r.message.find("is not in value set") != std::string::npos);
  // SNOMED CT is not in the package: the store must not claim anything.
  r = store().validate_code("http://hl7.org/fhir/ValueSet/clinical-findings", "http://snomed.info/sct", "22298006");
  CHECK(r.validity == Validity::NotChecked);
  CHECK(r.message.find("http://snomed.info/sct") != std::string::npos);
  // Unknown value set.
  r = store().validate_code("http://example.org/ValueSet/none", kGenderSystem, "male");
  CHECK(r.validity == Validity::NotChecked);
}

TEST_CASE("is-a filters follow the code system hierarchy; exclude removes codes", "[terminology]") {
  // v3-FamilyMember: RoleCode is-a FAMMEMB.
  const char* family = "http://terminology.hl7.org/ValueSet/v3-FamilyMember";
  CHECK(store().validate_code(family, kRoleCode, "FAMMEMB").validity == Validity::Valid);
  CHECK(store().validate_code(family, kRoleCode, "MTH").validity == Validity::Valid);   // mother, two levels down
  CHECK(store().validate_code(family, kRoleCode, "HOSP").validity == Validity::Invalid);  // a place, not family
  std::shared_ptr<const Expansion> e;
  REQUIRE(store().expand(family, &e));
  CHECK(e->is_complete());
  CHECK(e->codes.size() > 50);
  // PersonalRelationshipRoleType: is-a the abstract head, minus the head itself.
  const char* personal = "http://terminology.hl7.org/ValueSet/v3-PersonalRelationshipRoleType";
  CHECK(store().validate_code(personal, kRoleCode, "_PersonalRelationshipRoleType").validity == Validity::Invalid);
  CHECK(store().validate_code(personal, kRoleCode, "FRND").validity == Validity::Valid);
  CHECK(store().subsumes(kRoleCode, "FAMMEMB", "MTH") == Validity::Valid);
  CHECK(store().subsumes(kRoleCode, "MTH", "FAMMEMB") == Validity::Invalid);
  CHECK(store().subsumes("http://snomed.info/sct", "1", "2") == Validity::NotChecked);
}

TEST_CASE("mixed value sets: known part checked, external part not", "[terminology]") {
  // v3-ObservationType = ActCode is-a _ObservationType + all of LOINC.
  const char* vs = "http://terminology.hl7.org/ValueSet/v3-ObservationType";
  std::shared_ptr<const Expansion> e;
  REQUIRE(store().expand(vs, &e));
  CHECK_FALSE(e->is_complete());
  CHECK(e->is_unchecked("http://loinc.org"));
  CHECK(store().validate_code(vs, "http://loinc.org", "1234-5").validity == Validity::NotChecked);
  CHECK(store().validate_code(vs, "http://terminology.hl7.org/CodeSystem/v3-ActCode", "NOT-A-CODE").validity ==
        Validity::Invalid);
}

TEST_CASE("codes of external systems: form checked, existence not claimed", "[terminology]") {
  CHECK(external_code_syntax("urn:ietf:bcp:13", "application/pdf").empty());
  CHECK(external_code_syntax("urn:ietf:bcp:13", "text/plain;charset=UTF-8").empty());
  CHECK_FALSE(external_code_syntax("urn:ietf:bcp:13", "pdf").empty());
  CHECK_FALSE(external_code_syntax("urn:ietf:bcp:13", "application/").empty());
  CHECK(external_code_syntax("urn:ietf:bcp:47", "fr-FR").empty());
  CHECK(external_code_syntax("urn:ietf:bcp:47", "zh-Hant-TW").empty());
  CHECK_FALSE(external_code_syntax("urn:ietf:bcp:47", "fr_FR").empty());
  CHECK_FALSE(external_code_syntax("urn:ietf:bcp:47", "1fr").empty());
  CHECK(external_code_syntax("http://loinc.org", "29463-7").empty());
  CHECK(external_code_syntax("http://loinc.org", "LP43571-6").empty());
  CHECK_FALSE(external_code_syntax("http://loinc.org", "29463").empty());
  CHECK(external_code_syntax("http://snomed.info/sct", "22298006").empty());   // myocardial infarction
  CHECK(external_code_syntax("http://snomed.info/sct", "404684003").empty());  // clinical finding
  CHECK_FALSE(external_code_syntax("http://snomed.info/sct", "22298007").empty());  // check digit wrong
  CHECK_FALSE(external_code_syntax("http://snomed.info/sct", "12345").empty());
  // Through a value set: the mimetypes set is all of BCP-13, which the store lacks.
  const char* mime = "http://hl7.org/fhir/ValueSet/mimetypes";
  CHECK(store().validate_code(mime, "", "application/pdf").validity == Validity::NotChecked);
  CodeResult r = store().validate_code(mime, "", "pdf");
  CHECK(r.validity == Validity::Invalid);
  CHECK(r.message.find("MIME type") != std::string::npos);
  CHECK(store().validate_code("http://hl7.org/fhir/ValueSet/clinical-findings", "http://snomed.info/sct", "22298007")
            .validity == Validity::Invalid);
}

TEST_CASE("lookup", "[terminology]") {
  CodeResult r = store().lookup(kGenderSystem, "other");
  CHECK(r.validity == Validity::Valid);
  CHECK(r.display == "Other");
  CHECK(store().lookup(kGenderSystem, "nope").validity == Validity::Invalid);
  CHECK(store().lookup("http://loinc.org", "1234-5").validity == Validity::NotChecked);
}

TEST_CASE("added value sets, imports and cycles", "[terminology]") {
  Store s;
  REQUIRE(s.add_json(R"({"resourceType":"CodeSystem","url":"http://ex.org/cs","content":"complete",
    "concept":[{"code":"a","concept":[{"code":"a1"},{"code":"a2"}]},{"code":"b"}]})"));
  REQUIRE(s.add_json(R"({"resourceType":"ValueSet","url":"http://ex.org/vs-a",
    "compose":{"include":[{"system":"http://ex.org/cs","filter":[{"property":"concept","op":"descendent-of","value":"a"}]}]}})"));
  REQUIRE(s.add_json(R"({"resourceType":"ValueSet","url":"http://ex.org/vs-import",
    "compose":{"include":[{"valueSet":["http://ex.org/vs-a"]},{"system":"http://ex.org/cs","concept":[{"code":"b"},{"code":"zz"}]}]}})"));
  REQUIRE(s.add_json(R"({"resourceType":"ValueSet","url":"http://ex.org/loop1","compose":{"include":[{"valueSet":["http://ex.org/loop2"]}]}})"));
  REQUIRE(s.add_json(R"({"resourceType":"ValueSet","url":"http://ex.org/loop2","compose":{"include":[{"valueSet":["http://ex.org/loop1"]}]}})"));
  CHECK(s.validate_code("http://ex.org/vs-a", "http://ex.org/cs", "a").validity == Validity::Invalid);
  CHECK(s.validate_code("http://ex.org/vs-a", "http://ex.org/cs", "a2").validity == Validity::Valid);
  std::shared_ptr<const Expansion> e;
  REQUIRE(s.expand("http://ex.org/vs-import", &e));
  CHECK(e->codes.size() == 3);  // a1, a2, b; "zz" is not in the complete system
  CHECK(s.validate_code("http://ex.org/vs-import", "http://ex.org/cs", "zz").validity == Validity::Invalid);
  fhir::Status st = s.expand("http://ex.org/loop1", &e);
  CHECK_FALSE(st);
  CHECK(st.issues().front().message_id == "tx-import-depth");
  CHECK_FALSE(s.add_json("[1,2]"));
  CHECK_FALSE(s.add_json(R"({"resourceType":"Patient","url":"x"})"));
}

TEST_CASE("expansion cache is safe across threads", "[terminology]") {
  std::vector<std::thread> threads;
  std::atomic<int> valid{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i)
        if (store().validate_code("http://terminology.hl7.org/ValueSet/v3-FamilyMember", kRoleCode, "MTH").validity ==
            Validity::Valid)
          ++valid;
    });
  for (auto& th : threads) th.join();
  CHECK(valid == 200);
}

TEST_CASE("our French sets (terminology/data) load after the package", "[terminology][fr]") {
  const std::string vs = "https://espace.example/fhir/ValueSet/dmp-confidentiality";
  const std::string a07 =
      "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument";
  CHECK(store().validate_code(vs, a07, "MASQUE_PS").validity == Validity::Valid);
  CHECK(store().validate_code(vs, a07, "INVISIBLE_REPRESENTANTS_LEGAUX").validity == Validity::Valid);
  CHECK(store().validate_code(vs, a07, "MASQUE_TOUS").validity == Validity::Invalid);
  // Codes of the package's v3 confidentiality system are part of the set.
  CHECK(store().validate_code(vs, "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "R").validity ==
        Validity::Valid);
  CHECK(store().validate_code(vs, "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "L").validity ==
        Validity::Invalid);
  // A curated subset of LOINC: listed codes are members, others are not.
  const std::string types = "https://espace.example/fhir/ValueSet/dmp-document-type";
  CHECK(store().validate_code(types, "http://loinc.org", "11488-4").validity == Validity::Valid);
  CHECK(store().validate_code(types, "http://loinc.org", "99999-9").validity == Validity::Invalid);
  // Our TRE_G15 code system is a fragment: an absent code is not claimed to be wrong.
  const std::string g15 = "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante";
  CHECK(store().lookup(g15, "10").validity == Validity::Valid);
  CHECK(store().lookup(g15, "10").display == "Médecin");
  CHECK(store().lookup(g15, "99").validity != Validity::Valid);
  const std::string status = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-identity-status";
  CHECK(store().lookup(status, "QUAL").validity == Validity::Valid);
  CHECK(store().lookup(status, "VIDE").validity == Validity::Invalid);  // complete system: VIDE is not an RNIV status
}
