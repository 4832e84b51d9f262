// Validator throughput on one thread, validating exactly as the server does
// before a write (interactions/validate.cpp: base specification + our
// profiles loaded from profiles/data + the profiles required per type):
//   (a) a DMP DocumentReference (test-data/profiles/fr/valid-documentreference-dmp.json,
//       checked against the base and dmp-documentreference);
//   (b) a 50-entry IHE MHD provide-document transaction Bundle (a SubmissionSet
//       List, 25 DocumentReferences, 24 Binaries), validated whole as a transaction is;
//   (c) a French Patient with an INS (test-data/profiles/fr/valid-patient-ins.json,
//       fr-patient-ins with its INS key check).
// Resources are parsed once beforehand. Per scenario it prints validations per
// CPU-second of this thread (a busy machine lowers it less than wall time),
// microseconds per validation, and instructions per validation:
//   - from the CPU's instruction counter (perf_event_open, user space, this
//     thread), when the kernel and the machine offer one;
//   - under `valgrind --tool=callgrind`, from callgrind's own count: each
//     scenario is dumped separately (callgrind.out.<pid>.<n> in the current
//     folder) and its total read back. Load-independent, use small counts:
//       valgrind --tool=callgrind bench_validate 300 6 300
//
// Usage: bench_validate [DOCUMENTREFERENCES] [BUNDLES] [PATIENTS]   (default 20000 200 20000)
#include <linux/perf_event.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define ESPACE_HAVE_CALLGRIND 1
#else
#define ESPACE_HAVE_CALLGRIND 0
#endif

#include "espace/fhir/data_files.h"
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

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

double thread_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) / 1e9;
}

bool under_valgrind() {
#if ESPACE_HAVE_CALLGRIND
  return RUNNING_ON_VALGRIND;
#else
  return false;
#endif
}

// The CPU's retired-instruction counter for this thread (user space only),
// or -1 when the machine does not expose it (many VMs).
class InstructionCounter {
 public:
  InstructionCounter() {
    perf_event_attr attr{};
    attr.type = PERF_TYPE_HARDWARE;
    attr.size = sizeof attr;
    attr.config = PERF_COUNT_HW_INSTRUCTIONS;
    attr.disabled = 1;
    attr.exclude_kernel = 1;
    attr.exclude_hv = 1;
    fd_ = static_cast<int>(syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0));
    if (fd_ >= 0 && ioctl(fd_, PERF_EVENT_IOC_ENABLE, 0) != 0) {
      close(fd_);
      fd_ = -1;
    }
  }
  ~InstructionCounter() {
    if (fd_ >= 0) close(fd_);
  }
  int64_t read_count() const {
    uint64_t v = 0;
    if (fd_ < 0 || ::read(fd_, &v, sizeof v) != sizeof v) return -1;
    return static_cast<int64_t>(v);
  }

 private:
  int fd_ = -1;
};

// Callgrind's instruction total of dump number `n` of this process, or -1.
int64_t callgrind_dump_total(int n) {
  std::ifstream in("callgrind.out." + std::to_string(getpid()) + "." + std::to_string(n));
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("totals:", 0) == 0 || line.rfind("summary:", 0) == 0)
      return std::strtoll(line.c_str() + line.find(':') + 1, nullptr, 10);
  return -1;
}

const std::string kFormatSystem = "https://mos.esante.gouv.fr/NOS/TRE_A11-IheFormatCode/FHIR/TRE-A11-IheFormatCode";
const std::string kFacilitySystem = "https://mos.esante.gouv.fr/NOS/TRE_R02-SecteurActivite/FHIR/TRE-R02-SecteurActivite";
const std::string kSettingSystem = "https://mos.esante.gouv.fr/NOS/TRE_A01-CadreExercice/FHIR/TRE-A01-CadreExercice";
// The document every Binary carries, with its base64 and SHA-1 (as MHD sends them).
const std::string kContentBase64 = "Q29tcHRlIHJlbmR1IHN5bnRoZXRpcXVlIGRlIHRlc3QuCg==";
const std::string kContentSha1 = "UJB34H4QKUJofAnWinwCn21Idys=";
const int kContentSize = 34;

// An ITI-65 provide bundle of 50 entries: the SubmissionSet List, 24
// DocumentReferences each followed by its Binary, and a 25th DocumentReference
// whose attachment names a Binary already on the server (the validator accepts
// it; the MHD submission rules, which run after validation, would not).
std::string provide_bundle(int b) {
  const int documents = 25;
  std::ostringstream s;
  auto uuid = [&](int kind, int i) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "urn:uuid:00000000-0000-4000-8%03d-%012d", kind, b * 100 + i);
    return std::string(buf);
  };
  s << R"({"resourceType":"Bundle","type":"transaction",)"
    << R"("meta":{"profile":["https://profiles.ihe.net/ITI/MHD/StructureDefinition/IHE.MHD.Minimal.ProvideBundle"]},)"
    << R"("entry":[{"fullUrl":")" << uuid(0, 0) << R"(","resource":{"resourceType":"List",)"
    << R"("extension":[{"url":"https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-sourceId","valueIdentifier":{"value":"urn:oid:1.2.250.1.999.1"}},)"
    << R"({"url":"https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-designationType","valueCodeableConcept":{"coding":[{"system":"http://loinc.org","code":"11488-4"}]}}],)"
    << R"("identifier":[{"use":"official","system":"urn:ietf:rfc:3986","value":"urn:oid:1.2.250.1.999.7.)" << b
    << R"("}],"status":"current","mode":"working",)"
    << R"("code":{"coding":[{"system":"https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes","code":"submissionset"}]},)"
    << R"("subject":{"reference":"Patient/mhd-qualified"},"date":"2026-11-20T10:05:00+01:00",)"
    << R"("source":{"reference":"Practitioner/mhd-author"},"entry":[)";
  for (int i = 0; i < documents; ++i) s << (i ? "," : "") << R"({"item":{"reference":")" << uuid(1, i) << R"("}})";
  s << R"(]},"request":{"method":"POST","url":"List"}})";
  for (int i = 0; i < documents; ++i) {
    bool has_binary = i < documents - 1;
    s << R"(,{"fullUrl":")" << uuid(1, i) << R"(","resource":{"resourceType":"DocumentReference",)"
      << R"("masterIdentifier":{"system":"urn:ietf:rfc:3986","value":"urn:oid:1.2.250.1.999.8.)" << b << "." << i
      << R"("},"status":"current","type":{"coding":[{"system":"http://loinc.org","code":"11488-4"}]},)"
      << R"("category":[{"coding":[{"system":"urn:oid:1.2.250.1.213.1.1.4.1","code":"10"}]}],)"
      << R"("subject":{"reference":"Patient/mhd-qualified"},"date":"2026-11-20T10:00:00+01:00",)"
      << R"("author":[{"reference":"Practitioner/mhd-author"}],"custodian":{"reference":"Organization/mhd-custodian"},)"
      << R"("securityLabel":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"N"}]}],)"
      << R"("content":[{"attachment":{"contentType":"text/plain",)";
    s << R"("url":")" << (has_binary ? uuid(2, i) : "Binary/existing-" + std::to_string(b)) << '"';
    s << R"(,"size":)" << kContentSize << R"(,"hash":")" << kContentSha1 << R"("},)"
      << R"("format":{"system":")" << kFormatSystem << R"(","code":"urn:ihe:iti:xds:2017:mimeTypeSufficient"}}],)"
      << R"("context":{"event":[{"coding":[{"system":"urn:oid:2.16.840.1.113883.6.3","code":"C34"}]}],)"
      << R"("period":{"start":"2026-11-18","end":"2026-11-19"},)"
      << R"("facilityType":{"coding":[{"system":")" << kFacilitySystem << R"(","code":"SA05"}]},)"
      << R"("practiceSetting":{"coding":[{"system":")" << kSettingSystem << R"(","code":"ETABLISSEMENT"}]}}},)"
      << R"("request":{"method":"POST","url":"DocumentReference"}})";
    if (has_binary)
      s << R"(,{"fullUrl":")" << uuid(2, i) << R"(","resource":{"resourceType":"Binary","contentType":"text/plain",)"
        << R"("data":")" << kContentBase64 << R"("},"request":{"method":"POST","url":"Binary"}})";
  }
  s << "]}";
  return s.str();
}

struct Scenario {
  std::string name;
  std::vector<fhir::Node> inputs;  // validated round robin
  size_t count = 0;
};

struct Result {
  double cpu = 0, wall = 0;
  int64_t instructions = -1;  // whole scenario; -1 unknown
  size_t with_errors = 0;
};

Result run(const profiles::Validator& validator, const Scenario& s, const InstructionCounter& counter,
           int* callgrind_dumps) {
  // As validate_for_write: the base, the resource's meta.profile and the profiles required per type.
  profiles::ValidationOptions opts;
  opts.apply_required_profiles = true;
  Result r;
#if ESPACE_HAVE_CALLGRIND
  CALLGRIND_ZERO_STATS;
#endif
  int64_t i0 = counter.read_count();
  double cpu0 = thread_cpu_seconds();
  auto wall0 = std::chrono::steady_clock::now();
  for (size_t i = 0; i < s.count; ++i)
    r.with_errors += profiles::has_errors(validator.validate(s.inputs[i % s.inputs.size()], opts));
  r.cpu = thread_cpu_seconds() - cpu0;
  r.wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
  int64_t i1 = counter.read_count();
  if (i0 >= 0 && i1 >= 0) r.instructions = i1 - i0;
#if ESPACE_HAVE_CALLGRIND
  if (under_valgrind()) {
    CALLGRIND_DUMP_STATS_AT(s.name.c_str());
    r.instructions = callgrind_dump_total(++*callgrind_dumps);
  }
#endif
  return r;
}

std::optional<fhir::Node> parse_or_report(const fhir::Definitions& defs, const std::string& what,
                                          const std::string& json) {
  fhir::Node n;
  if (fhir::Status st = fhir::parse_json(defs, json, &n); !st) {
    std::fprintf(stderr, "%s does not parse: %s\n", what.c_str(), st.message().c_str());
    return std::nullopt;
  }
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  size_t n_docs = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 20000;
  size_t n_bundles = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 200;
  size_t n_patients = argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 20000;
  std::printf("machine: %u logical CPUs, CPU: %s, load average: %s%s\n", std::thread::hardware_concurrency(),
              cpu_model().c_str(), load_average().c_str(), under_valgrind() ? " (under valgrind)" : "");

  std::unique_ptr<fhir::Definitions> defs;
  if (fhir::Status st = fhir::Definitions::load(fhir::Definitions::default_package_dir(), &defs); !st) {
    std::fprintf(stderr, "cannot load definitions: %s\n", st.message().c_str());
    return 1;
  }
  std::unique_ptr<terminology::Store> tx;
  if (fhir::Status st = terminology::Store::load(fhir::Definitions::default_package_dir(), &tx); !st) {
    std::fprintf(stderr, "cannot load terminology: %s\n", st.message().c_str());
    return 1;
  }
  profiles::Validator validator(*defs, tx.get());
  fhir::Status st = validator.load_data_profiles();
  if (st) st = validator.load_required_profiles();
  if (!st) {
    std::fprintf(stderr, "cannot load our profiles: %s\n", st.message().c_str());
    return 1;
  }

  std::vector<Scenario> scenarios(3);
  scenarios[0].name = "(a) DMP DocumentReference";
  scenarios[0].count = n_docs;
  scenarios[1].name = "(b) MHD transaction Bundle, 50 entries";
  scenarios[1].count = n_bundles;
  scenarios[2].name = "(c) FR Patient with INS";
  scenarios[2].count = n_patients;
  for (auto [index, file] : {std::pair{0, "test-data/profiles/fr/valid-documentreference-dmp.json"},
                             std::pair{2, "test-data/profiles/fr/valid-patient-ins.json"}}) {
    std::string text;
    if (fhir::Status s = fhir::read_data_file(file, &text); !s) {
      std::fprintf(stderr, "%s\n", s.message().c_str());
      return 1;
    }
    auto n = parse_or_report(*defs, file, text);
    if (!n) return 1;
    scenarios[index].inputs.push_back(std::move(*n));
  }
  for (int b = 0; b < 4; ++b) {
    auto n = parse_or_report(*defs, "the provide bundle", provide_bundle(b));
    if (!n) return 1;
    scenarios[1].inputs.push_back(std::move(*n));
  }

  // Every input must be valid (else we would time the error paths), and the
  // first validation compiles the rules of the types involved.
  profiles::ValidationOptions opts;
  opts.apply_required_profiles = true;
  for (const Scenario& s : scenarios)
    for (const fhir::Node& n : s.inputs)
      for (const fhir::Issue& i : validator.validate(n, opts))
        if (i.severity == fhir::Severity::Error || i.severity == fhir::Severity::Fatal) {
          std::fprintf(stderr, "%s: the input is not valid: %s: %s\n", s.name.c_str(), i.expression.c_str(),
                       i.diagnostics.c_str());
          return 1;
        }

  InstructionCounter counter;
  int dumps = 0;
  bool failed = false;
  std::printf("%-40s %10s %12s %10s %14s\n", "scenario", "count", "valid./CPU-s", "us/valid.", "instr./valid.");
  for (const Scenario& s : scenarios) {
    if (!s.count) continue;
    Result r = run(validator, s, counter, &dumps);
    double n = double(s.count);
    char instructions[32] = "n/a";
    if (r.instructions >= 0) std::snprintf(instructions, sizeof instructions, "%.0f", double(r.instructions) / n);
    std::printf("%-40s %10zu %12.0f %10.1f %14s\n", s.name.c_str(), s.count, n / r.cpu, 1e6 * r.cpu / n,
                instructions);
    if (r.with_errors) {
      std::printf("  %zu validations reported errors\n", r.with_errors);
      failed = true;
    }
  }
  if (counter.read_count() < 0 && !under_valgrind())
    std::printf("instructions: no hardware counter on this machine; run under valgrind --tool=callgrind with small "
                "counts for them\n");
  std::printf("load average after: %s\n", load_average().c_str());
  return failed ? 1 : 0;
}
