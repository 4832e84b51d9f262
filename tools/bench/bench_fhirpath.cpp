// FHIRPath micro-benchmark: 100,000 synthetic resources (half Patients, half
// Observations, built by parse_json from generated text), ten typical
// search-parameter and invariant expressions, single-threaded.
//
// Usage: bench_fhirpath [RESOURCES]   (default 100000)
// Prints evaluations per second for each expression and overall.
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "espace/fhir/definitions.h"
#include "espace/fhir/json.h"
#include "espace/fhirpath/fhirpath.h"

using namespace espace;

namespace {

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      size_t colon = line.find(':');
      return colon == std::string::npos ? line : line.substr(colon + 2);
    }
  }
  return "unknown";
}

// Deterministic pseudo-random numbers (no dependence on the C library's rand()).
struct Rng {
  uint64_t s = 0x9E3779B97F4A7C15ull;
  uint32_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return uint32_t(s);
  }
};

const char* kFamilies[] = {"Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand"};
const char* kGiven[] = {"Jean", "Marie", "Pierre", "Anne", "Luc", "Claire", "Paul", "Sophie"};

std::string patient_json(int i, Rng& r) {
  char buf[1024];
  const char* use = r.next() % 4 == 0 ? "usual" : "official";
  std::snprintf(buf, sizeof buf,
                R"({"resourceType":"Patient","id":"p%d","active":%s,)"
                R"("identifier":[{"system":"urn:oid:1.2.250.1.213.1.4.8","value":"%015d"},)"
                R"({"system":"urn:oid:1.2.250.1.71.4.2.1","value":"M%07d"}],)"
                R"("name":[{"use":"%s","family":"%s","given":["%s","%s"]}],)"
                R"("telecom":[{"system":"phone","value":"+33 1 %02d %02d %02d %02d","use":"home"}],)"
                R"("gender":"%s","birthDate":"%04d-%02d-%02d"})",
                i, r.next() % 10 ? "true" : "false", int(r.next() % 1000000000), i, use, kFamilies[r.next() % 8],
                kGiven[r.next() % 8], kGiven[r.next() % 8], int(r.next() % 100), int(r.next() % 100),
                int(r.next() % 100), int(r.next() % 100), r.next() % 2 ? "female" : "male", 1930 + int(r.next() % 90),
                1 + int(r.next() % 12), 1 + int(r.next() % 28));
  return buf;
}

std::string observation_json(int i, Rng& r) {
  char buf[1024];
  std::snprintf(buf, sizeof buf,
                R"({"resourceType":"Observation","id":"o%d","status":"final",)"
                R"("category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],)"
                R"("code":{"coding":[{"system":"http://loinc.org","code":"29463-7","display":"Body weight"}]},)"
                R"("subject":{"reference":"Patient/p%d"},"effectiveDateTime":"20%02d-%02d-%02dT%02d:%02d:00+01:00",)"
                R"("valueQuantity":{"value":%d.%d,"unit":"kg","system":"http://unitsofmeasure.org","code":"kg"}})",
                i, int(r.next() % 50000), int(r.next() % 25), 1 + int(r.next() % 12), 1 + int(r.next() % 28),
                int(r.next() % 24), int(r.next() % 60), 3 + int(r.next() % 150), int(r.next() % 10));
  return buf;
}

// CPU time of this thread: the rate on one core even when the machine is shared.
double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) / 1e9;
}

struct Case {
  const char* type;  // resource type the expression is written for
  const char* expression;
};

const Case kCases[] = {
    {"Patient", "Patient.name.family"},
    {"Observation", "Observation.subject"},
    {"Observation", "Observation.value.ofType(Quantity)"},
    {"Patient", "name.where(use='official').given"},
    {"Patient", "identifier.where(system='urn:oid:1.2.250.1.213.1.4.8').value"},
    {"Patient", "name.exists() or identifier.exists()"},
    {"Observation", "(effective as dateTime)"},
    {"Observation", "code.coding.where(system = 'http://loinc.org').code"},
    {"Observation", "value.ofType(Quantity).value > 100"},
    {"Patient", "telecom.where(system = 'phone').exists() implies active"},
};

}  // namespace

int main(int argc, char** argv) {
  int total = argc > 1 ? std::atoi(argv[1]) : 100000;
  if (total < 2) total = 2;
  std::unique_ptr<fhir::Definitions> defs;
  fhir::Status st = fhir::Definitions::load(fhir::Definitions::default_package_dir(), &defs);
  if (!st) {
    std::fprintf(stderr, "cannot load the definitions: %s\n", st.message().c_str());
    return 1;
  }
  std::printf("machine: %u logical CPUs (nproc), CPU: %s\n", std::thread::hardware_concurrency(), cpu_model().c_str());

  Rng rng;
  std::vector<fhir::Node> patients(size_t(total / 2)), observations(size_t(total - total / 2));
  auto t0 = std::chrono::steady_clock::now();
  for (size_t i = 0; i < patients.size(); ++i) {
    st = fhir::parse_json(*defs, patient_json(int(i), rng), &patients[i]);
    if (!st) { std::fprintf(stderr, "generated Patient does not parse: %s\n", st.message().c_str()); return 1; }
  }
  for (size_t i = 0; i < observations.size(); ++i) {
    st = fhir::parse_json(*defs, observation_json(int(i), rng), &observations[i]);
    if (!st) { std::fprintf(stderr, "generated Observation does not parse: %s\n", st.message().c_str()); return 1; }
  }
  double gen = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("generated and parsed %d resources (%zu Patient, %zu Observation) in %.2f s\n", total, patients.size(),
              observations.size(), gen);

  fhirpath::CompileOptions opts;
  opts.definitions = defs.get();
  fhirpath::Environment env;
  size_t all_evals = 0;
  double all_secs = 0, all_wall = 0;
  size_t checksum = 0;
  std::printf("%-66s %11s %14s %14s %9s\n", "expression", "evaluations", "evals/s (CPU)", "evals/s (wall)",
              "results");
  for (const Case& c : kCases) {
    std::shared_ptr<const fhirpath::Expression> e;
    st = fhirpath::compile(c.expression, opts, &e);
    if (!st) { std::fprintf(stderr, "%s: %s\n", c.expression, st.message().c_str()); return 1; }
    const std::vector<fhir::Node>& set = std::string(c.type) == "Patient" ? patients : observations;
    // Enough passes over the resources of the expression's type for `total` evaluations.
    size_t evals = 0, results = 0;
    fhirpath::Collection out;
    auto start = std::chrono::steady_clock::now();
    double cpu_start = thread_cpu_seconds();
    while (evals < size_t(total)) {
      for (const fhir::Node& r : set) {
        st = e->evaluate(&r, env, &out);
        if (!st) { std::fprintf(stderr, "%s: %s\n", c.expression, st.message().c_str()); return 1; }
        results += out.size();
        ++evals;
      }
    }
    double secs = thread_cpu_seconds() - cpu_start;
    double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    checksum += results;
    all_evals += evals;
    all_secs += secs;
    all_wall += wall;
    std::printf("%-66s %11zu %14.0f %14.0f %9zu\n", c.expression, evals, double(evals) / secs, double(evals) / wall,
                results);
  }
  std::printf("overall: %zu evaluations, %.3f s CPU (%.3f s wall) = %.0f evaluations per CPU-second, %.0f per wall "
              "second (single thread; checksum %zu)\n",
              all_evals, all_secs, all_wall, double(all_evals) / all_secs, double(all_evals) / all_wall, checksum);
  return 0;
}
