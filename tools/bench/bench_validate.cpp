// Validator throughput on one core: DocumentReferences, and 50-entry
// transaction Bundles (Patients, Observations, DocumentReferences), each
// validated against the R4 base specification (formats, cardinality,
// bindings, invariants, references). Resources are parsed once beforehand;
// the figures are validations per CPU-second of this thread (and per wall
// second), so a busy machine lowers them less.
//
// Usage: bench_validate [DOCUMENTREFERENCES] [BUNDLES]   (default 20000 500)
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "espace/fhir/definitions.h"
#include "espace/fhir/json.h"
#include "espace/profiles/validator.h"
#include "espace/terminology/terminology.h"

using namespace espace;

namespace {

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      size_t colon = line.find(':');
      return colon == std::string::npos ? line : line.substr(colon + 2);
    }
  return "unknown";
}

double thread_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) / 1e9;
}

std::string document_reference(int i) {
  char buf[2048];
  std::snprintf(
      buf, sizeof buf,
      R"({"resourceType":"DocumentReference","id":"dr%d",)"
      R"("text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Compte rendu %d</div>"},)"
      R"("masterIdentifier":{"system":"urn:ietf:rfc:3986","value":"urn:oid:1.2.250.1.999.1.1.%d"},)"
      R"("identifier":[{"system":"urn:ietf:rfc:3986","value":"urn:uuid:0c287d32-01e3-4d87-9953-%012d"}],)"
      R"("status":"current","docStatus":"final",)"
      R"("type":{"coding":[{"system":"http://loinc.org","code":"11488-4","display":"Consult note"}]},)"
      R"("category":[{"coding":[{"system":"http://loinc.org","code":"11488-4"}]}],)"
      R"("subject":{"reference":"Patient/p%d"},"date":"2024-03-%02dT10:20:00+01:00",)"
      R"("author":[{"reference":"Practitioner/pr%d"},{"reference":"Organization/org-1"}],)"
      R"("custodian":{"reference":"Organization/org-1"},)"
      R"("securityLabel":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"N"}]}],)"
      R"("content":[{"attachment":{"contentType":"application/pdf","language":"fr-FR","url":"Binary/bin-%d","size":%d,)"
      R"("hash":"2jmj7l5rSw0yVb/vlWAYkK/YBwk=","title":"Compte rendu","creation":"2024-03-01T10:00:00+01:00"},)"
      R"("format":{"system":"http://ihe.net/fhir/ValueSet/IHE.FormatCode.codesystem","code":"urn:ihe:iti:xds:2017:mimeTypeSufficient"}}],)"
      R"("context":{"encounter":[{"reference":"Encounter/enc-%d"}],)"
      R"("period":{"start":"2024-03-01T09:00:00+01:00","end":"2024-03-01T10:00:00+01:00"}}})",
      i, i, i, i, i % 1000, 1 + i % 28, i % 50, i, 1000 + i, i);
  return buf;
}

std::string patient(int i) {
  char buf[1024];
  std::snprintf(buf, sizeof buf,
                R"({"resourceType":"Patient","identifier":[{"system":"urn:oid:1.2.250.1.213.1.4.8","value":"%015d"}],)"
                R"("name":[{"use":"official","family":"Martin","given":["Claire"]}],)"
                R"("telecom":[{"system":"phone","value":"+33 1 23 45 67 89","use":"home"}],)"
                R"("gender":"female","birthDate":"1955-08-%02d"})",
                i, 1 + i % 28);
  return buf;
}

std::string observation(int subject) {
  char buf[1024];
  std::snprintf(buf, sizeof buf,
                R"({"resourceType":"Observation","status":"final",)"
                R"("category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],)"
                R"("code":{"coding":[{"system":"http://loinc.org","code":"29463-7"}]},)"
                R"("subject":{"reference":"urn:uuid:00000000-0000-4000-8000-%012d"},"effectiveDateTime":"2024-03-01T10:15:00+01:00",)"
                R"("valueQuantity":{"value":72.5,"unit":"kg","system":"http://unitsofmeasure.org","code":"kg"}})",
                subject);
  return buf;
}

std::string bundle(int b) {
  std::string s = R"({"resourceType":"Bundle","type":"transaction","entry":[)";
  for (int e = 0; e < 50; ++e) {
    int n = b * 50 + e;
    std::string res = e % 3 == 0 ? patient(n) : e % 3 == 1 ? observation(n - 1) : document_reference(n);
    const char* type = e % 3 == 0 ? "Patient" : e % 3 == 1 ? "Observation" : "DocumentReference";
    char head[256];
    std::snprintf(head, sizeof head, R"(%s{"fullUrl":"urn:uuid:00000000-0000-4000-8000-%012d","resource":)",
                  e ? "," : "", n);
    s += head;
    s += res;
    s += R"(,"request":{"method":"POST","url":")";
    s += type;
    s += R"("}})";
  }
  s += "]}";
  return s;
}

struct Result {
  double cpu, wall;
  size_t errors;
};

template <typename F>
Result measure(size_t n, F&& f) {
  size_t errors = 0;
  double cpu0 = thread_cpu_seconds();
  auto wall0 = std::chrono::steady_clock::now();
  for (size_t i = 0; i < n; ++i) errors += f(i);
  return {thread_cpu_seconds() - cpu0, std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count(),
          errors};
}

}  // namespace

int main(int argc, char** argv) {
  size_t n_docs = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 20000;
  size_t n_bundles = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 500;
  std::printf("machine: %u logical CPUs (nproc), CPU: %s\n", std::thread::hardware_concurrency(), cpu_model().c_str());

  std::unique_ptr<fhir::Definitions> defs;
  if (fhir::Status st = fhir::Definitions::load(fhir::Definitions::default_package_dir(), &defs); !st) {
    std::fprintf(stderr, "cannot load definitions: %s\n", st.message().c_str());
    return 1;
  }
  std::unique_ptr<terminology::Store> tx;
  terminology::LoadStats stats;
  if (fhir::Status st = terminology::Store::load(fhir::Definitions::default_package_dir(), &tx, &stats); !st) {
    std::fprintf(stderr, "cannot load terminology: %s\n", st.message().c_str());
    return 1;
  }
  std::printf("terminology: %zu code systems, %zu value sets loaded in %.3f s\n", stats.code_systems, stats.value_sets,
              stats.seconds);
  profiles::Validator validator(*defs, tx.get());

  std::vector<fhir::Node> docs(n_docs > 1000 ? 1000 : n_docs);
  for (size_t i = 0; i < docs.size(); ++i)
    if (fhir::Status st = fhir::parse_json(*defs, document_reference(int(i)), &docs[i]); !st) {
      std::fprintf(stderr, "DocumentReference does not parse: %s\n", st.message().c_str());
      return 1;
    }
  std::vector<fhir::Node> bundles(n_bundles > 50 ? 50 : n_bundles);
  for (size_t i = 0; i < bundles.size(); ++i)
    if (fhir::Status st = fhir::parse_json(*defs, bundle(int(i)), &bundles[i]); !st) {
      std::fprintf(stderr, "Bundle does not parse: %s\n", st.message().c_str());
      return 1;
    }
  // Warm-up: compiles the rules of the types involved and the expansions.
  validator.validate(docs[0]);
  validator.validate(bundles[0]);

  Result d = measure(n_docs, [&](size_t i) { return profiles::has_errors(validator.validate(docs[i % docs.size()])); });
  std::printf("DocumentReference: %zu validations, %.0f /CPU-s, %.0f /wall-s, %zu with errors\n", n_docs,
              double(n_docs) / d.cpu, double(n_docs) / d.wall, d.errors);
  Result b =
      measure(n_bundles, [&](size_t i) { return profiles::has_errors(validator.validate(bundles[i % bundles.size()])); });
  std::printf("Bundle (transaction, 50 entries): %zu validations, %.0f /CPU-s, %.0f /wall-s (%.0f entries/CPU-s), "
              "%zu with errors\n",
              n_bundles, double(n_bundles) / b.cpu, double(n_bundles) / b.wall, 50.0 * double(n_bundles) / b.cpu,
              b.errors);
  std::string text = document_reference(7);
  Result p = measure(n_docs, [&](size_t) {
    fhir::Node n;
    if (!fhir::parse_json(*defs, text, &n)) return size_t(1);
    return size_t(profiles::has_errors(validator.validate(n)));
  });
  std::printf("DocumentReference parse + validate: %.0f /CPU-s\n", double(n_docs) / p.cpu);
  return d.errors || b.errors ? 1 : 0;
}
